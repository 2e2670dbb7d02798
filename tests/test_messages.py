"""Messages of a session: history, recording, context injection, asking with a stream."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import httpx
import pytest
from quart import Quart
from quart.datastructures import FileStorage
from quart.testing import QuartClient

from backend.models import Message, Task
from backend.settings import Settings
from tests.support.chats import (
    Account,
    answer_next_task,
    create_account,
    create_chat,
    create_session,
    live_chat_stack,
)
from tests.support.images import image_bytes
from tests.support.live_server import LiveServer
from tests.support.sse_client import events


@pytest.fixture
async def session_url(client: QuartClient, owner: Account) -> str:
    chat = await create_chat(client, owner, prompt={"opener": "Hello there"})
    session = await create_session(client, owner, chat["id"])
    return f"/api/v1/chats/{chat['id']}/sessions/{session['id']}/messages"


async def upload_png(client: QuartClient, account: Account) -> str:
    response = await client.post(
        "/api/v1/uploads",
        files={"file": FileStorage(io.BytesIO(image_bytes()), "a.png", "file", "image/png")},
        headers=account.headers,
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["data"]["id"]


async def post(client: QuartClient, url: str, account: Account, body: dict):
    return await client.post(url, json=body, headers=account.headers)


async def test_record_a_user_message(client: QuartClient, owner: Account, session_url: str) -> None:
    response = await post(client, session_url, owner, {"content": "What is 2+2?"})
    assert response.status_code == 201
    message = (await response.get_json())["data"]
    assert message["role"] == "user"
    assert message["content"] == [{"type": "text", "text": "What is 2+2?"}]
    assert message["visible"] is True
    assert message["prompt_tokens"] == 0
    assert message["completion_tokens"] == 0
    assert message["task_id"] is None
    assert message["created_at"]


async def test_question_field_and_parts(
    client: QuartClient, owner: Account, session_url: str
) -> None:
    question = await post(client, session_url, owner, {"question": "Hi"})
    assert (await question.get_json())["data"]["content"] == [{"type": "text", "text": "Hi"}]
    parts = [
        {"type": "text", "text": "Look"},
        {"type": "image", "url": "https://example.com/cat.png"},
    ]
    response = await post(client, session_url, owner, {"content": parts, "role": "assistant"})
    assert response.status_code == 201
    message = (await response.get_json())["data"]
    assert message["role"] == "assistant"
    assert message["content"] == [parts[0], {**parts[1], "upload_id": None}]


async def test_history_hides_invisible_messages_unless_asked(
    client: QuartClient, owner: Account, session_url: str
) -> None:
    hidden = await post(
        client,
        session_url,
        owner,
        {"content": "User prefers metric", "role": "system", "visible": False},
    )
    assert hidden.status_code == 201
    await post(client, session_url, owner, {"content": "How far is it?"})

    visible = await client.get(session_url, headers=owner.headers)
    page = (await visible.get_json())["data"]
    assert [m["content"][0]["text"] for m in page["items"]] == ["Hello there", "How far is it?"]
    assert page["total"] == 2

    everything = await client.get(f"{session_url}?include_hidden=true", headers=owner.headers)
    items = (await everything.get_json())["data"]["items"]
    assert [(m["role"], m["visible"]) for m in items] == [
        ("assistant", True),
        ("system", False),
        ("user", True),
    ]


async def test_history_pages_oldest_first(
    client: QuartClient, owner: Account, session_url: str
) -> None:
    for i in range(5):
        await post(client, session_url, owner, {"content": f"m{i}"})
    response = await client.get(f"{session_url}?page=2&page_size=2", headers=owner.headers)
    page = (await response.get_json())["data"]
    assert page["total"] == 6
    assert (page["page"], page["page_size"]) == (2, 2)
    assert [m["content"][0]["text"] for m in page["items"]] == ["m1", "m2"]
    bad = await client.get(f"{session_url}?page=0", headers=owner.headers)
    assert bad.status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"content": "a", "question": "b"},
        {"content": ""},
        {"content": "   "},
        {"content": []},
        {"content": [{"type": "video", "url": "x"}]},
        {"content": [{"type": "image"}]},
        {"content": [{"type": "image", "url": "x", "upload_id": "y"}]},
        {"content": "x", "role": "tool"},
        {"content": "x", "visible": "sometimes"},
    ],
)
async def test_malformed_messages_are_422(
    client: QuartClient, owner: Account, session_url: str, body: dict
) -> None:
    response = await post(client, session_url, owner, body)
    assert response.status_code == 422
    assert (await response.get_json())["message"].startswith("Invalid request")


async def test_uploaded_images_must_be_the_users_own(
    client: QuartClient, owner: Account, stranger: Account, session_url: str
) -> None:
    own = await upload_png(client, owner)
    theirs = await upload_png(client, stranger)
    ok = await post(client, session_url, owner, {"content": [{"type": "image", "upload_id": own}]})
    assert ok.status_code == 201
    refused = await post(
        client, session_url, owner, {"content": [{"type": "image", "upload_id": theirs}]}
    )
    assert refused.status_code == 404


async def test_other_users_session_is_not_found(
    client: QuartClient, owner: Account, stranger: Account, session_url: str
) -> None:
    created = await post(client, session_url, owner, {"content": "secret"})
    message_id = (await created.get_json())["data"]["id"]
    assert (await client.get(session_url, headers=stranger.headers)).status_code == 404
    assert (await post(client, session_url, stranger, {"content": "x"})).status_code == 404
    deleted = await client.delete(f"{session_url}/{message_id}", headers=stranger.headers)
    assert deleted.status_code == 404
    assert await Message.exists(id=message_id)


async def test_requires_auth(client: QuartClient, session_url: str) -> None:
    assert (await client.get(session_url)).status_code == 401
    assert (await client.post(session_url, json={"content": "x"})).status_code == 401
    assert (await client.delete(f"{session_url}/{'0' * 32}")).status_code == 401


async def test_unknown_session_is_not_found(
    client: QuartClient, owner: Account, session_url: str
) -> None:
    url = session_url.rsplit("/sessions/", 1)[0] + "/sessions/0123456789abcdef/messages"
    assert (await client.get(url, headers=owner.headers)).status_code == 404
    assert (await post(client, url, owner, {"content": "x"})).status_code == 404


async def test_delete_one_message(client: QuartClient, owner: Account, session_url: str) -> None:
    created = await post(client, session_url, owner, {"content": "oops"})
    message_id = (await created.get_json())["data"]["id"]
    response = await client.delete(f"{session_url}/{message_id}", headers=owner.headers)
    assert response.status_code == 200
    again = await client.delete(f"{session_url}/{message_id}", headers=owner.headers)
    assert again.status_code == 404
    history = await client.get(session_url, headers=owner.headers)
    ids = [m["id"] for m in (await history.get_json())["data"]["items"]]
    assert message_id not in ids


async def test_stream_only_for_visible_user_messages(
    client: QuartClient, owner: Account, session_url: str
) -> None:
    for extra in ({"role": "system"}, {"visible": False}):
        response = await post(client, session_url, owner, {"content": "x", "stream": True, **extra})
        assert response.status_code == 400, extra
    assert not await Task.filter(user_id=owner.id).exists()


async def test_stream_refuses_images_for_a_text_only_model(
    client: QuartClient, owner: Account, session_url: str
) -> None:
    upload = await upload_png(client, owner)
    response = await post(
        client,
        session_url,
        owner,
        {"content": [{"type": "image", "upload_id": upload}], "stream": True},
    )
    assert response.status_code == 400
    assert "image" in (await response.get_json())["message"]


async def test_stream_records_the_question_and_streams_the_answer(
    app: Quart, client: QuartClient, owner: Account, session_url: str
) -> None:
    request = asyncio.create_task(
        post(client, session_url, owner, {"question": "Say hi", "stream": True})
    )
    task = await answer_next_task(app, owner.id, ["Hi", " there"])
    response = await asyncio.wait_for(request, 10)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    body = await response.get_data(as_text=True)
    frames = [block for block in body.split("\n\n") if block.strip()]
    assert [line for f in frames for line in f.split("\n") if line.startswith("event:")] == [
        "event: task",
        "event: token",
        "event: token",
        "event: done",
    ]
    assert f'data: {{"task_id":"{task.id}"}}' in frames[0]
    assert response.headers["X-Task-ID"] == task.id
    assert '"delta": "Hi"' in frames[1] or '"delta":"Hi"' in frames[1]

    history = await client.get(session_url, headers=owner.headers)
    last = (await history.get_json())["data"]["items"][-1]
    assert last["role"] == "user"
    assert last["content"] == [{"type": "text", "text": "Say hi"}]
    assert last["task_id"] == task.id
    stored = await Task.get(id=task.id)
    assert stored.session_id == session_url.split("/sessions/")[1].split("/")[0]


@pytest.fixture(scope="module")
async def live_chat(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    async with live_chat_stack(settings, tmp_path_factory.mktemp("messages-live")) as server:
        yield server


async def test_live_stream_answers_and_stores_the_reply(live_chat: LiveServer) -> None:
    """Over real sockets with a real chat worker: the streamed reply is the stored one."""
    account = await create_account(live_chat.settings)
    headers = account.headers
    async with httpx.AsyncClient(base_url=live_chat.base_url, timeout=30) as http:
        chat = await http.post(
            "/api/v1/chats",
            json={"name": "live", "llm": {"model_name": "echo-live"}},
            headers=headers,
        )
        assert chat.status_code == 201, chat.text
        chat_id = chat.json()["data"]["id"]
        session = await http.post(f"/api/v1/chats/{chat_id}/sessions", json={}, headers=headers)
        url = f"/api/v1/chats/{chat_id}/sessions/{session.json()['data']['id']}/messages"
        body = {"question": "ping pong ball", "stream": True}
        async with http.stream("POST", url, json=body, headers=headers) as response:
            assert response.status_code == 200
            frames = [frame async for frame in events(response)]
        assert "".join(f.data["delta"] for f in frames if f.event == "token") == "ping pong ball"
        assert frames[-1].event == "done"
        message_id = frames[-1].data["message_id"]

        history = (await http.get(url, headers=headers)).json()["data"]["items"]
    assert [m["role"] for m in history] == ["assistant", "user", "assistant"]
    reply = history[-1]
    assert reply["id"] == message_id
    assert reply["content"] == [{"type": "text", "text": "ping pong ball"}]
    assert reply["completion_tokens"] > 0


async def test_routes_are_documented(client: QuartClient) -> None:
    paths = (await (await client.get("/openapi.json")).get_json())["paths"]
    base = "/api/v1/chats/{chat_id}/sessions/{session_id}/messages"
    assert {"get", "post"} <= set(paths[base])
    assert "delete" in paths[base + "/{message_id}"]
