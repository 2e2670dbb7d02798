"""SwiftChat's façade at /api: converse (raw text + usage line), models, image, upgrade."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from quart import Quart
from quart.testing import QuartClient

from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import ErrorEvent, TokenEvent
from tests.support.chats import (
    Account,
    answer_next_task,
    create_account,
    live_chat_stack,
    model_id,
    next_task,
)
from tests.support.fake_openai import fake_openai_server
from tests.support.live_server import LiveServer


def user_turn(*blocks: dict) -> dict:
    return {"role": "user", "content": list(blocks)}


async def converse(client: QuartClient, account: Account, body: dict):
    return await client.post("/api/converse", json=body, headers=account.headers)


async def test_converse_streams_text_then_usage(
    app: Quart, client: QuartClient, owner: Account
) -> None:
    body = {
        "messages": [
            user_turn({"text": "Hi"}),
            {"role": "assistant", "content": [{"text": "Hello"}]},
            user_turn({"text": "Tell me more"}),
        ],
        "modelId": model_id(),
        "region": "us-west-2",
        "system": [{"text": "Be kind."}],
    }
    request = asyncio.create_task(converse(client, owner, body))
    task = await answer_next_task(app, owner.id, ["Sure", ", here", " it is"])
    response = await asyncio.wait_for(request, 10)
    assert response.status_code == 200
    text = await response.get_data(as_text=True)
    answer, usage_line = text.rsplit("\n", 1)
    assert answer == "Sure, here it is"
    assert json.loads(usage_line) == {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10}

    stored = await Task.get(id=task.id)
    assert stored.session_id is None
    assert [m["role"] for m in stored.request["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    assert stored.request["messages"][0]["content"] == "Be kind."


@pytest.fixture(scope="module")
async def live_chat(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    async with live_chat_stack(settings, tmp_path_factory.mktemp("converse-live")) as server:
        yield server


async def test_live_converse_streams_the_model_answer(live_chat: LiveServer) -> None:
    """Over real sockets with a real chat worker and an OpenAI-compatible upstream."""
    account = await create_account(live_chat.settings)
    body = {"messages": [user_turn({"text": "echo these words"})], "modelId": "echo-live"}
    async with (
        httpx.AsyncClient(base_url=live_chat.base_url, timeout=30) as http,
        http.stream("POST", "/api/converse", json=body, headers=account.headers) as response,
    ):
        assert response.status_code == 200
        text = (await response.aread()).decode()
    answer, usage_line = text.rsplit("\n", 1)
    assert answer == "echo these words"
    usage = json.loads(usage_line)
    assert usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]


@pytest.mark.parametrize("path", ["/api/converse", "/api/converse/v2"])
async def test_live_converse_disconnect_cancels_the_answer(
    live_chat: LiveServer, path: str
) -> None:
    """SwiftChat's stop button closes the connection: the rest is not generated or charged."""
    account = await create_account(live_chat.settings)
    words = [f"w{i}" for i in range(500)]
    body = {"messages": [user_turn({"text": " ".join(words)})], "modelId": "echo-live"}
    async with (
        httpx.AsyncClient(base_url=live_chat.base_url, timeout=30) as http,
        http.stream("POST", path, json=body, headers=account.headers) as response,
    ):
        assert response.status_code == 200
        task_id = response.headers["X-Task-Id"]
        received = ""
        async for chunk in response.aiter_text():
            received += chunk
            if "w0" in received:
                break
    deadline = asyncio.get_running_loop().time() + 10
    while (task := await Task.get(id=task_id)).state is not TaskState.CANCELLED:
        assert asyncio.get_running_loop().time() < deadline, task.state
        await asyncio.sleep(0.1)
    assert 0 < task.completion_tokens < len(words)


def bedrock_events(body: str) -> list[dict]:
    """The body split and parsed as SwiftChat's app does (`\\n\\n`, then JSON.parse)."""
    assert body.endswith("\n\n"), body[-40:]
    return [json.loads(part) for part in body.split("\n\n") if part]


@pytest.mark.parametrize("path", ["/api/converse/v2", "/api/converse/v3"])
async def test_live_converse_v2_streams_bedrock_events(live_chat: LiveServer, path: str) -> None:
    """The request SwiftChat's app sends, answered with ConverseStream events over a socket."""
    account = await create_account(live_chat.settings)
    body = {
        "messages": [
            user_turn({"text": "Hi"}),
            {"role": "assistant", "content": [{"text": "Hello"}]},
            user_turn({"text": "echo these words"}),
        ],
        "modelId": "echo-live",
        "region": "us-west-2",
        "enableThinking": False,
        "system": [{"text": "Be brief."}],
    }
    reads: list[str] = []
    async with (
        httpx.AsyncClient(base_url=live_chat.base_url, timeout=30) as http,
        http.stream("POST", path, json=body, headers=account.headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        task_id = response.headers["X-Task-Id"]
        reads = [chunk async for chunk in response.aiter_text()]
    events = bedrock_events("".join(reads))
    assert all(len(event) == 1 for event in events), events
    assert events[0] == {"messageStart": {"role": "assistant"}}
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    assert all(d["contentBlockIndex"] == 0 for d in deltas)
    assert "".join(d["delta"]["text"] for d in deltas) == "echo these words"
    tail = [next(iter(event)) for event in events[1 + len(deltas) :]]
    assert tail == ["contentBlockStop", "messageStop", "metadata"]
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
    metadata = events[-1]["metadata"]
    usage = metadata["usage"]
    assert set(usage) == {"inputTokens", "outputTokens", "totalTokens"}
    assert usage["outputTokens"] > 0 and usage["inputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert metadata["metrics"]["latencyMs"] >= 0

    task = await Task.get(id=task_id)
    assert task.state is TaskState.SUCCEEDED and task.session_id is None
    assert (task.prompt_tokens, task.completion_tokens) == (
        usage["inputTokens"],
        usage["outputTokens"],
    )
    assert task.request["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_converse_v2_reports_a_failure_as_an_error_part(
    app: Quart, client: QuartClient, owner: Account
) -> None:
    request = asyncio.create_task(
        client.post(
            "/api/converse/v2",
            json={"messages": [user_turn({"text": "Hi"})]},
            headers=owner.headers,
        )
    )
    task = await next_task(owner.id)
    stream = TaskStream.for_task(app.config["REDIS"], app.config["SETTINGS"], task.id)
    await stream.append(TokenEvent(delta="Part"))
    await stream.append(ErrorEvent(code="provider_timeout", message="The model timed out"))
    response = await asyncio.wait_for(request, 10)
    *events, error = (await response.get_data(as_text=True)).split("\n\n")
    assert [json.loads(e) for e in events] == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Part"}, "contentBlockIndex": 0}},
    ]
    assert error == "Error: The model timed out"


async def test_converse_v2_refuses_bad_input_like_v1(client: QuartClient, owner: Account) -> None:
    video = {"format": "mp4", "source": {"bytes": "AAAA"}}
    for body, status in (
        ({"messages": []}, 422),
        ({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}, 400),
        ({"messages": [user_turn({"text": "what is this"}, {"video": video})]}, 415),
        ({"messages": [user_turn({"text": "x"})], "modelId": "no-such-model"}, 400),
    ):
        response = await client.post("/api/converse/v2", json=body, headers=owner.headers)
        assert response.status_code == status, body
        error = await response.get_json()
        assert error["code"] == status and error["message"], error
    assert (await client.post("/api/converse/v2", json={"messages": []})).status_code == 401
    assert not await Task.filter(user_id=owner.id).exists()


async def test_converse_reports_a_failure_as_an_error_line(
    app: Quart, client: QuartClient, owner: Account
) -> None:
    request = asyncio.create_task(
        converse(client, owner, {"messages": [user_turn({"text": "Hi"})]})
    )
    task = await next_task(owner.id)
    stream = TaskStream.for_task(app.config["REDIS"], app.config["SETTINGS"], task.id)
    await stream.append(TokenEvent(delta="Part"))
    await stream.append(ErrorEvent(code="provider_timeout", message="The model timed out"))
    response = await asyncio.wait_for(request, 10)
    assert await response.get_data(as_text=True) == "Part\nError: The model timed out"


async def test_converse_inlines_text_documents(
    app: Quart, client: QuartClient, owner: Account
) -> None:
    document = {
        "format": "txt",
        "name": "notes",
        "source": {"bytes": base64.b64encode(b"alpha beta").decode()},
    }
    request = asyncio.create_task(
        converse(
            client,
            owner,
            {"messages": [user_turn({"text": "Summarise"}, {"document": document})]},
        )
    )
    task = await answer_next_task(app, owner.id, ["ok"])
    await asyncio.wait_for(request, 10)
    stored = await Task.get(id=task.id)
    assert stored.request["messages"][-1]["content"] == "Summarise\nDocument 'notes':\nalpha beta"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"messages": []}, 422),
        ({"modelId": "x"}, 422),
        ({"messages": [{"role": "system", "content": [{"text": "x"}]}]}, 422),
        ({"messages": [{"role": "user", "content": []}]}, 422),
        ({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}, 400),
        ({"messages": [user_turn({})]}, 400),
        (
            {
                "messages": [
                    user_turn({"image": {"format": "png", "source": {"bytes": "@@not base64"}}})
                ]
            },
            400,
        ),
        (
            {
                "messages": [
                    user_turn(
                        {"document": {"format": "pdf", "name": "a", "source": {"bytes": "AAAA"}}}
                    )
                ]
            },
            415,
        ),
        ({"messages": [user_turn({"text": "x"})], "modelId": "no-such-model"}, None),
    ],
)
async def test_converse_rejects_bad_input(
    client: QuartClient, owner: Account, body: dict, status: int | None
) -> None:
    response = await converse(client, owner, body)
    if status is None:
        assert 400 <= response.status_code < 500
    else:
        assert response.status_code == status
    assert (await response.get_json())["message"]
    assert not await Task.filter(user_id=owner.id).exists()


async def test_converse_refuses_images_for_a_text_only_model(
    client: QuartClient, owner: Account
) -> None:
    image = {"format": "png", "source": {"bytes": base64.b64encode(b"\x89PNG").decode()}}
    response = await converse(client, owner, {"messages": [user_turn({"image": image})]})
    assert response.status_code == 400


async def test_facade_requires_auth(client: QuartClient) -> None:
    for path, body in (
        ("/api/converse", {"messages": [user_turn({"text": "x"})]}),
        ("/api/models", {}),
        ("/api/image", {"prompt": "x"}),
        ("/api/upgrade", {"os": "android", "version": "1.0.0"}),
    ):
        response = await client.post(path, json=body)
        assert response.status_code == 401, path


async def test_models_lists_text_models(client: QuartClient, owner: Account) -> None:
    response = await client.post("/api/models", json={"region": "us-west-2"}, headers=owner.headers)
    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"textModel", "imageModel"}
    assert {"modelId": model_id(), "modelName": model_id()} in body["textModel"]
    assert all(set(entry) == {"modelId", "modelName"} for entry in body["imageModel"])


async def test_models_rejects_malformed_input(client: QuartClient, owner: Account) -> None:
    response = await client.post("/api/models", json={"region": 5}, headers=owner.headers)
    assert response.status_code == 422


@pytest.fixture
async def images_endpoint(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """Image generation pointed at the fake OpenAI upstream for one test."""
    async with fake_openai_server(api_key="image-key") as fake:
        monkeypatch.setattr(settings, "image_base_url", fake.base_url)
        monkeypatch.setattr(settings, "image_api_key", "image-key")
        yield fake.base_url


async def test_image_returns_base64_from_the_images_provider(
    client: QuartClient, owner: Account, images_endpoint: str
) -> None:
    body = {"prompt": "Beautiful countryside", "width": "512", "height": "512"}
    response = await client.post("/api/image", json=body, headers=owner.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    image = base64.b64decode((await response.get_json())["image"])
    assert image.startswith(b"\x89PNG")

    models = await client.post("/api/models", json={}, headers=owner.headers)
    assert (await models.get_json())["imageModel"] == [
        {"modelId": "dall-e-3", "modelName": "dall-e-3"}
    ]


async def test_image_rejects_a_text_model_and_bad_input(
    client: QuartClient, owner: Account, images_endpoint: str
) -> None:
    wrong = await client.post(
        "/api/image", json={"prompt": "x", "modelId": model_id()}, headers=owner.headers
    )
    assert wrong.status_code == 400
    for body in (
        {},
        {"prompt": ""},
        {"prompt": "x", "width": 10},
        {"prompt": "x", "height": "big"},
    ):
        response = await client.post("/api/image", json=body, headers=owner.headers)
        assert response.status_code == 422, body


async def test_image_is_503_when_not_configured(
    client: QuartClient, owner: Account, settings: Settings
) -> None:
    assert not (settings.image_base_url or settings.image_api_key or settings.openai_api_key)
    response = await client.post("/api/image", json={"prompt": "x"}, headers=owner.headers)
    assert response.status_code == 503
    assert "IMAGE_API_KEY" in (await response.get_json())["message"]
    models = await client.post("/api/models", json={}, headers=owner.headers)
    assert (await models.get_json())["imageModel"] == []


async def test_app_versions_are_admin_managed(
    client: QuartClient, owner: Account, root: Account
) -> None:
    body = {"version": "2.3.1", "url": "https://example.com/app.apk", "notes": "fixes"}
    assert (await client.put("/api/v1/app-versions/android", json=body)).status_code == 401
    refused = await client.put("/api/v1/app-versions/android", json=body, headers=owner.headers)
    assert refused.status_code == 403
    for bad in ({"version": "2.3"}, {"version": "x.y.z"}, {}):
        malformed = await client.put("/api/v1/app-versions/android", json=bad, headers=root.headers)
        assert malformed.status_code == 422, bad
    bad_platform = await client.put(
        "/api/v1/app-versions/Android%20OS", json=body, headers=root.headers
    )
    assert bad_platform.status_code == 400

    saved = await client.put("/api/v1/app-versions/android", json=body, headers=root.headers)
    assert saved.status_code == 200
    assert (await saved.get_json())["data"]["version"] == "2.3.1"
    listed = await client.get("/api/v1/app-versions", headers=owner.headers)
    versions = {v["platform"]: v["version"] for v in (await listed.get_json())["data"]}
    assert versions["android"] == "2.3.1"
    assert (await client.get("/api/v1/app-versions")).status_code == 401


async def test_upgrade_compares_versions(
    client: QuartClient, owner: Account, root: Account
) -> None:
    await client.put(
        "/api/v1/app-versions/mac",
        json={"version": "1.10.0", "url": "https://example.com/app.dmg"},
        headers=root.headers,
    )

    async def check(os_name: str, version: str) -> dict:
        response = await client.post(
            "/api/upgrade", json={"os": os_name, "version": version}, headers=owner.headers
        )
        assert response.status_code == 200
        return await response.get_json()

    assert await check("mac", "1.9.5") == {
        "needUpgrade": True,
        "version": "1.10.0",
        "url": "https://example.com/app.dmg",
    }
    assert await check("mac", "1.10.0") == {"needUpgrade": False, "version": "1.10.0", "url": ""}
    assert await check("plan9", "1.0.0") == {"needUpgrade": False, "version": "0.0.0", "url": ""}
    malformed = await client.post(
        "/api/upgrade", json={"os": "mac", "version": "latest"}, headers=owner.headers
    )
    assert malformed.status_code == 422


async def test_routes_are_documented(client: QuartClient) -> None:
    paths = (await (await client.get("/openapi.json")).get_json())["paths"]
    for path in (
        "/api/converse",
        "/api/converse/v2",
        "/api/converse/v3",
        "/api/models",
        "/api/image",
        "/api/upgrade",
    ):
        assert "post" in paths[path], path
    assert "get" in paths["/api/v1/app-versions"]
    assert "put" in paths["/api/v1/app-versions/{platform}"]
