"""A client whose connection went half-open takes its stream over when it resumes.

The client reads through `CuttableProxy`, which then drops the client side and leaves
the server's connection open and unread: the server sees no disconnect and keeps
writing, exactly as when a phone changes network. Events are appended by the test
through TaskStream, as the chat worker does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.asyncio.client import ClientConnection

from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import DoneEvent, TokenEvent
from tests.support.accounts import Account
from tests.support.cut_proxy import CuttableProxy, cuttable_proxy
from tests.support.live_server import LiveServer, ServerProcess, create_chat_session
from tests.support.sse_client import Frame, bearer, events, frames
from tests.support.task_models import SLOW

RECEIVE_TIMEOUT = 10
# The replaced delivery must end on the takeover's announcement, well before the lease
# refresh (a third of STREAM_LEASE_SECONDS) would end it anyway.
ENDS_WITHIN_SECONDS = 3.0


@pytest.fixture
async def redis(live_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(live_settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def proxy(live_processes: LiveServer) -> AsyncIterator[CuttableProxy]:
    async with cuttable_proxy(live_processes.port) as proxy:
        yield proxy


async def running_task(
    account: Account, redis: aioredis.Redis, settings: Settings
) -> tuple[Task, TaskStream]:
    task = await Task.create(user_id=account.id, model="test-model", state=TaskState.RUNNING)
    return task, TaskStream.for_task(redis, settings, task.id)


async def append_tokens(stream: TaskStream, tokens: list[str]) -> list[str]:
    return [await stream.append(TokenEvent(delta=token)) for token in tokens]


async def append_done(stream: TaskStream) -> str:
    return await stream.append(
        DoneEvent(message_id="m", prompt_tokens=1, completion_tokens=1, cost=0)
    )


async def until_consumed(stream: TaskStream) -> None:
    deadline = time.monotonic() + RECEIVE_TIMEOUT
    while not await stream.is_consumed():
        assert time.monotonic() < deadline, "the stream was never marked consumed"
        await asyncio.sleep(0.05)


def stream_url(task: Task) -> str:
    return f"/api/v1/tasks/{task.id}/stream"


async def test_sse_resume_takes_over_a_half_open_delivery(
    proxy: CuttableProxy,
    live_processes: LiveServer,
    redis: aioredis.Redis,
    live_settings: Settings,
    live_user: Account,
) -> None:
    task, stream = await running_task(live_user, redis, live_settings)
    before = await append_tokens(stream, ["a", "b", "c"])
    headers = bearer(live_user.access_token)
    seen: list[Frame] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy.port}", timeout=10) as via:
        with pytest.raises(httpx.TransportError):
            async with via.stream("GET", stream_url(task), headers=headers) as response:
                assert response.status_code == 200
                async for frame in events(response):
                    seen.append(frame)
                    if len(seen) == len(before):
                        await proxy.cut_clients()
    assert [f.id for f in seen] == before
    # Written by the server into the dead connection: the client never got these.
    lost = await append_tokens(stream, ["d", "e"])
    old = proxy.connections[0]
    assert lost[-1].encode() in await proxy.server_bytes(old, lost[-1].encode(), RECEIVE_TIMEOUT)

    async with httpx.AsyncClient(base_url=live_processes.base_url, timeout=10) as http:
        started = time.monotonic()
        async with http.stream(
            "GET", stream_url(task), headers={**headers, "Last-Event-ID": before[-1]}
        ) as resumed:
            assert resumed.status_code == 200, await resumed.aread()
            assert time.monotonic() - started < live_settings.stream_lease_wait_seconds
            # A reader without a resume point is still a second reader.
            async with http.stream("GET", stream_url(task), headers=headers) as refused:
                assert refused.status_code == 409
            # The replaced delivery ended: its chunked response was closed...
            written = await proxy.server_bytes(old, b"\r\n0\r\n\r\n", ENDS_WITHIN_SECONDS)
            assert written.endswith(b"\r\n0\r\n\r\n")
            rest = await append_tokens(stream, ["f"]) + [await append_done(stream)]
            received = [frame async for frame in events(resumed)]
    # ...before any later event, and the resumed reader lost and repeated nothing.
    assert not any(entry_id.encode() in written for entry_id in rest)
    assert [f.id for f in received] == lost + rest
    assert [f.data.get("delta") for f in received[:-1]] == ["d", "e", "f"]


async def test_sse_resume_with_an_id_of_another_stream_is_still_refused(
    proxy: CuttableProxy,
    live_processes: LiveServer,
    redis: aioredis.Redis,
    live_settings: Settings,
    live_user: Account,
) -> None:
    """Only an entry id of this very stream proves the reader is the one that dropped."""
    task, stream = await running_task(live_user, redis, live_settings)
    _, other_stream = await running_task(live_user, redis, live_settings)
    first = (await append_tokens(stream, ["a"]))[0]
    # Streams number their entries independently: the same millisecond gives the same id.
    await asyncio.sleep(0.005)
    foreign = (await append_tokens(other_stream, ["x"]))[0]
    headers = bearer(live_user.access_token)
    async with (
        httpx.AsyncClient(base_url=live_processes.base_url, timeout=10) as http,
        http.stream("GET", stream_url(task), headers=headers) as holder,
    ):
        iterator = events(holder)
        assert (await anext(iterator)).id == first
        for last_event_id in (foreign, "1-0"):
            resume = {**headers, "Last-Event-ID": last_event_id}
            async with http.stream("GET", stream_url(task), headers=resume) as refused:
                assert refused.status_code == 409, last_event_id
        done = await append_done(stream)
        assert (await anext(iterator)).id == done


async def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT))


async def request(ws: ClientConnection, **message: Any) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    return await receive(ws)


async def test_websocket_resume_takes_over_a_half_open_subscription(
    proxy: CuttableProxy,
    live_processes: LiveServer,
    redis: aioredis.Redis,
    live_settings: Settings,
    live_user: Account,
) -> None:
    task, stream = await running_task(live_user, redis, live_settings)
    before = await append_tokens(stream, ["a", "b"])
    query = f"/api/v1/ws?access_token={live_user.access_token}"
    # Uncompressed, so the test can read what the server wrote into the dead connection.
    old_ws = await websockets.connect(f"ws://127.0.0.1:{proxy.port}{query}", compression=None)
    await receive(old_ws)
    assert (await request(old_ws, type="subscribe", task_id=task.id))["type"] == "subscribed"
    assert [(await receive(old_ws))["id"] for _ in before] == before
    await proxy.cut_clients()
    lost = await append_tokens(stream, ["c"])
    old = proxy.connections[0]
    assert lost[0].encode() in await proxy.server_bytes(old, lost[0].encode(), RECEIVE_TIMEOUT)

    direct = f"ws://127.0.0.1:{live_processes.port}{query}"
    async with websockets.connect(direct) as ws:
        await receive(ws)
        started = time.monotonic()
        reply = await request(
            ws, type="subscribe", task_id=task.id, last_event_id=before[-1], ref="r"
        )
        assert reply == {"type": "subscribed", "task_id": task.id, "ref": "r"}
        assert time.monotonic() - started < live_settings.stream_lease_wait_seconds
        async with websockets.connect(direct) as other:
            await receive(other)
            refused = await request(other, type="subscribe", task_id=task.id)
            assert refused["type"] == "error" and refused["code"] == 409
        # The replaced subscription ended and said so (into the dead connection).
        notice = b'"code":409,"message":"Another connection resumed'
        written = await proxy.server_bytes(old, notice, ENDS_WITHIN_SECONDS)
        assert notice in written
        rest = await append_tokens(stream, ["d"]) + [await append_done(stream)]
        received = [await receive(ws) for _ in lost + rest]
    await old_ws.close()
    assert not any(entry_id.encode() in written for entry_id in rest)
    assert [m["id"] for m in received] == lost + rest
    assert received[-1]["type"] == "done"


async def test_a_client_cut_before_its_first_id_takes_the_stream_over_from_the_start(
    proxy: CuttableProxy,
    live_processes: LiveServer,
    chat_worker: ServerProcess,
    redis: aioredis.Redis,
    live_settings: Settings,
    live_user: Account,
) -> None:
    """POST with `"stream": true`, cut right after the opening `event: task` frame: the
    client never got an `id:`. Without a resume point it is refused with a message that
    names only ids it can send; with `0-0` it takes the stream over at once, from the
    first entry, and the delivery stuck on the dead connection ends."""
    session = await create_chat_session(live_user, SLOW)
    headers = bearer(live_user.access_token)
    body = {"session_id": session.id, "question": "Tell me everything", "stream": True}
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy.port}", timeout=10) as via,
        via.stream("POST", "/api/v1/tasks", json=body, headers=headers) as posted,
    ):
        assert posted.status_code == 200
        task_id = posted.headers["X-Task-ID"]
        opening = await anext(frames(posted))
        assert opening.event == "task" and opening.id is None
        await proxy.cut_clients()
    stream = TaskStream.for_task(redis, live_settings, task_id)
    url = f"/api/v1/tasks/{task_id}/stream"
    old = proxy.connections[0]

    async with httpx.AsyncClient(base_url=live_processes.base_url, timeout=10) as http:
        refused = await http.get(url, headers=headers)
        assert refused.status_code == 409
        message = refused.json()["message"]
        assert "0-0" in message and "you sent no last event id" in message
        started = time.monotonic()
        from_start = {**headers, "Last-Event-ID": "0-0"}
        received: list[Frame] = []
        async with http.stream("GET", url, headers=from_start) as resumed:
            assert resumed.status_code == 200, await resumed.aread()
            assert time.monotonic() - started < live_settings.stream_lease_wait_seconds
            written = await proxy.server_bytes(old, b"\r\n0\r\n\r\n", ENDS_WITHIN_SECONDS)
            assert written.endswith(b"\r\n0\r\n\r\n")
            async for frame in events(resumed):
                received.append(frame)
                if len(received) == 3:
                    cancel = await http.post(f"/api/v1/tasks/{task_id}/cancel", headers=headers)
                    assert cancel.status_code in (200, 202), cancel.text
                if frame.terminal:
                    break
        # Consumed once the server has handed over the terminal event: the start is then
        # refused like any fresh read.
        await until_consumed(stream)
        gone = await http.get(url, headers=from_start)
        assert gone.status_code == 410
    entries = await stream.read_after()
    assert [f.id for f in received] == [e.id for e in entries]
    assert received[0].event == "token" and received[-1].event == "cancelled"
