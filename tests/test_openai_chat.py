"""OpenAI's chat completions: the official `openai` SDK, unchanged, over a real socket
against /v1/chat/completions and RAGFlow's chat-scoped paths; references and failures
in the shapes the SDK parses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from quart import Quart
from quart.testing import QuartClient

from backend.models import Task
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import DoneEvent, ErrorEvent, Reference, ReferenceEvent, TokenEvent
from tests.support.chats import (
    LIVE_MODEL,
    Account,
    create_account,
    create_chat,
    live_chat_stack,
    next_task,
)
from tests.support.live_server import LiveServer

CHUNK = {
    "id": "c1",
    "content": "Sluice streams answers.",
    "document_id": "d" * 32,
    "document_name": "notes.txt",
    "dataset_id": "e" * 32,
    "similarity": 0.9,
    "vector_similarity": 0.8,
    "term_similarity": 1.0,
}


@pytest.fixture(scope="module")
async def live_chat(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    async with live_chat_stack(settings, tmp_path_factory.mktemp("openai-live")) as server:
        yield server


async def live_assistant(server: LiveServer, account: Account, **fields) -> str:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        body = {"name": f"oa-{account.id}", **fields}
        response = await http.post("/api/v1/chats", json=body, headers=account.headers)
        assert response.status_code == 201, response.text
        return response.json()["data"]["id"]


def sdk(server: LiveServer, account: Account, base: str = "/v1") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=account.access_token, base_url=server.base_url + base, max_retries=0
    )


async def test_the_sdk_streams_a_model_answer_with_usage_last(live_chat: LiveServer) -> None:
    account = await create_account(live_chat.settings)
    client = sdk(live_chat, account)
    stream = await client.chat.completions.create(
        model=LIVE_MODEL,
        messages=[{"role": "user", "content": "echo these words"}],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo these words"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    usage = chunks[-1].usage
    assert usage.completion_tokens > 0 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    task = await Task.get(id=chunks[0].id.removeprefix("chatcmpl-"))
    assert (task.session_id, task.completion_tokens) == (None, usage.completion_tokens)


async def test_an_answer_cut_by_max_tokens_finishes_with_length_and_usage_comes_apart(
    live_chat: LiveServer,
) -> None:
    """As OpenAI sends them: `finish_reason` "length" when max_tokens cut the answer (the
    provider's reason carried through the task's `done`), and with
    `stream_options.include_usage` the usage in one more chunk whose `choices` is empty."""
    account = await create_account(live_chat.settings)
    client = sdk(live_chat, account)
    stream = await client.chat.completions.create(
        model=LIVE_MODEL,
        messages=[{"role": "user", "content": "one two three four five"}],
        stream=True,
        max_tokens=2,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    *answer, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 2
    assert last.usage.total_tokens == last.usage.prompt_tokens + 2
    assert all(c.usage is None for c in answer)
    assert "".join(c.choices[0].delta.content or "" for c in answer) == "one two "
    assert [c.choices[0].finish_reason for c in answer] == [None] * (len(answer) - 1) + ["length"]

    completion = await client.chat.completions.create(
        model=LIVE_MODEL,
        messages=[{"role": "user", "content": "one two three four five"}],
        max_tokens=3,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "one two three "
    whole = await client.chat.completions.create(
        model=LIVE_MODEL, messages=[{"role": "user", "content": "one two"}], max_tokens=3
    )
    assert whole.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("base", ["/api/v1/openai/{chat}", "/api/v1/chats_openai/{chat}", "/v1"])
async def test_the_sdk_asks_an_assistant_without_streaming(
    live_chat: LiveServer, base: str
) -> None:
    account = await create_account(live_chat.settings)
    chat = await live_assistant(live_chat, account, prompt={"prompt": "Be brief."})
    client = sdk(live_chat, account, base.format(chat=chat))
    completion = await client.chat.completions.create(
        model=chat if base == "/v1" else "model",
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "answer in words"}]},
        ],
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "answer in words"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 3
    task = await Task.get(id=completion.id.removeprefix("chatcmpl-"))
    sent = task.request["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert [m["role"] for m in sent[1:]] == ["user", "assistant", "user"]


async def test_failures_are_errors_the_sdk_raises(live_chat: LiveServer) -> None:
    account = await create_account(live_chat.settings)
    other = await create_account(live_chat.settings)
    foreign_chat = await live_assistant(live_chat, other)
    client = sdk(live_chat, account)
    question = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="no-such-model", messages=question)
    assert missing.value.type == "not_found_error"
    assert "no-such-model" in missing.value.message and LIVE_MODEL in missing.value.message
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model=foreign_chat, messages=question)
    with pytest.raises(openai.NotFoundError):
        await sdk(live_chat, account, f"/api/v1/openai/{foreign_chat}").chat.completions.create(
            model="model", messages=question
        )
    with pytest.raises(openai.BadRequestError) as last_not_user:
        await client.chat.completions.create(
            model=LIVE_MODEL, messages=[{"role": "assistant", "content": "hi"}]
        )
    assert "last message must be the user's" in last_not_user.value.message
    assert last_not_user.value.type == "invalid_request_error"
    with pytest.raises(openai.UnprocessableEntityError):
        await client.chat.completions.create(model=LIVE_MODEL, messages=[])
    anonymous = openai.AsyncOpenAI(
        api_key="not-a-token", base_url=live_chat.base_url + "/v1", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        await anonymous.chat.completions.create(model=LIVE_MODEL, messages=question)
    assert unauthenticated.value.type == "authentication_error"


async def test_leaving_a_stream_cancels_the_answer(live_chat: LiveServer) -> None:
    account = await create_account(live_chat.settings)
    words = [f"w{i}" for i in range(500)]
    client = sdk(live_chat, account)
    stream = await client.chat.completions.create(
        model=LIVE_MODEL, messages=[{"role": "user", "content": " ".join(words)}], stream=True
    )
    task_id = ""
    async for chunk in stream:
        task_id = chunk.id.removeprefix("chatcmpl-")
        if chunk.choices[0].delta.content:
            break
    await stream.close()
    deadline = asyncio.get_running_loop().time() + 10
    while (task := await Task.get(id=task_id)).state.value != "cancelled":
        assert asyncio.get_running_loop().time() < deadline, task.state
        await asyncio.sleep(0.1)
    assert 0 < task.completion_tokens < len(words)


def data_frames(body: str) -> list:
    frames = [block.removeprefix("data: ") for block in body.split("\n\n") if block]
    assert frames[-1] == "[DONE]", body
    return [json.loads(frame) for frame in frames[:-1]]


async def test_the_reference_rides_on_the_last_chunk(
    app: Quart, client: QuartClient, owner: Account
) -> None:
    chat = await create_chat(client, owner)
    body = {"model": "model", "messages": [{"role": "user", "content": "q"}], "stream": True}
    request = asyncio.create_task(
        client.post(
            f"/api/v1/openai/{chat['id']}/chat/completions", json=body, headers=owner.headers
        )
    )
    task = await next_task(owner.id)
    stream = TaskStream.for_task(app.config["REDIS"], app.config["SETTINGS"], task.id)
    await stream.append(ReferenceEvent(total=1, chunks=[CHUNK]))
    await stream.append(TokenEvent(delta="Yes [ID:0]"))
    final = Reference(total=1, chunks=[CHUNK], doc_aggs=[])
    await stream.append(
        DoneEvent(message_id=None, prompt_tokens=9, completion_tokens=2, cost=0, reference=final)
    )
    frames = data_frames(await (await asyncio.wait_for(request, 10)).get_data(as_text=True))
    assert [f["choices"][0]["delta"].get("content") for f in frames] == ["", "Yes [ID:0]", None]
    last = frames[-1]
    assert last["choices"][0]["delta"]["reference"][0]["document_name"] == "notes.txt"
    assert last["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    assert all("reference" not in f["choices"][0]["delta"] for f in frames[:-1])


async def test_a_failure_mid_stream_is_an_error_frame(
    app: Quart, client: QuartClient, owner: Account
) -> None:
    body = {"model": "model", "messages": [{"role": "user", "content": "q"}], "stream": True}
    chat = await create_chat(client, owner)
    request = asyncio.create_task(
        client.post(
            f"/api/v1/chats_openai/{chat['id']}/chat/completions", json=body, headers=owner.headers
        )
    )
    task = await next_task(owner.id)
    stream = TaskStream.for_task(app.config["REDIS"], app.config["SETTINGS"], task.id)
    await stream.append(TokenEvent(delta="Par"))
    await stream.append(ErrorEvent(code="provider_timeout", message="The model timed out"))
    frames = data_frames(await (await asyncio.wait_for(request, 10)).get_data(as_text=True))
    assert frames[-1] == {
        "error": {
            "message": "The model timed out",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


async def test_deleting_the_api_key_ends_its_stream_with_an_error_the_sdk_raises(
    live_chat: LiveServer,
) -> None:
    """The stream's credential is revoked mid-answer: OpenAI's SDK raises the error frame,
    and the abandoned answer is cancelled (issue 19, item 2)."""
    account = await create_account(live_chat.settings)
    async with httpx.AsyncClient(base_url=live_chat.base_url, timeout=30) as http:
        created = await http.post(
            "/api/v1/users/me/api-keys", json={"name": "sdk"}, headers=account.headers
        )
        key = created.json()["data"]
        client = openai.AsyncOpenAI(
            api_key=key["key"], base_url=live_chat.base_url + "/v1", max_retries=0
        )
        words = " ".join(f"w{i}" for i in range(500))
        stream = await client.chat.completions.create(
            model=LIVE_MODEL, messages=[{"role": "user", "content": words}], stream=True
        )
        task_id = ""
        with pytest.raises(openai.APIError, match="revoked API key"):
            async with asyncio.timeout(10):
                async for chunk in stream:
                    task_id = chunk.id.removeprefix("chatcmpl-")
                    if chunk.choices and chunk.choices[0].delta.content and key:
                        deleted = await http.delete(
                            f"/api/v1/users/me/api-keys/{key['id']}", headers=account.headers
                        )
                        assert deleted.status_code == 200
                        key = None
    deadline = asyncio.get_running_loop().time() + 10
    while (task := await Task.get(id=task_id)).state.value != "cancelled":
        assert asyncio.get_running_loop().time() < deadline, task.state
        await asyncio.sleep(0.1)
