"""A web process told to stop (SIGTERM, a rolling deploy) hands its open streams over to
another replica, with nothing lost or repeated (issue 18, graceful drain).

Two web processes as production starts them (`python -m backend web`) share a chat worker,
Redis and the database. An answer streams over SSE from the first, and a WebSocket is
open on it; the first gets SIGTERM:

- the SSE stream (and the document feed's) ends at once with the reconnect hint (a
  comment and `retry:`), no terminal event, and the task's lease is released;
- the WebSockets (ours and RAGFlow's) close with 1012 (Service Restart);
- an ordinary request in flight (a non-streamed OpenAI-compatible completion of a few
  seconds) is answered in full; the process stops accepting and exits by itself once it
  is, before WEB_DRAIN_SECONDS;
- resuming with Last-Event-ID on the second process gets exactly the rest of the answer
  and one `done`: every entry of the stream was received once.

Before: Hypercorn's CLI told the app nothing; streams ran on until its graceful timeout
cut them (a broken response), or held the process for the whole answer.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from backend.constants import task_events_key, task_lease_key
from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from tests.support.accounts import create_account
from tests.support.live_server import LiveServer, free_port, spawn, wait_ready
from tests.support.sse_client import Frame, frames
from tests.support.task_models import SLOW
from tests.support.task_stack import TaskStack, task_stack
from tests.test_tasks import make_session

pytestmark = pytest.mark.sqlite_only

DRAIN_SECONDS = 20.0
# What the process takes to end its streams and exit: far below DRAIN_SECONDS.
PROMPT_SECONDS = 5.0


async def start_web(settings: Settings, log_dir: Path, workers: int = 1) -> LiveServer:
    """The web process as the Procfile starts it."""
    port = free_port()
    args = [sys.executable, "-m", "backend", "web", "--bind", f"127.0.0.1:{port}"]
    args += ["--workers", str(workers)]
    server = spawn(f"web-{port}", args, settings, log_dir)
    await wait_ready(server, f"http://127.0.0.1:{port}/readyz")
    return LiveServer(port, server, settings)


@pytest.fixture(scope="module")
async def stack(
    app, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TaskStack]:
    log_dir = tmp_path_factory.mktemp("web-drain")
    async with task_stack(
        settings, log_dir, slow_tokens=200, web_drain_seconds=DRAIN_SECONDS
    ) as running:
        yield running


async def generating(user_id: int, count: int) -> None:
    """Until `count` of the user's tasks are being generated."""
    deadline = time.monotonic() + PROMPT_SECONDS
    while await Task.filter(user_id=user_id, state=TaskState.RUNNING).count() < count:
        assert time.monotonic() < deadline, "the tasks did not start"
        await asyncio.sleep(0.05)


def position(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence)


async def test_sigterm_hands_streams_to_another_replica_with_nothing_lost(
    stack: TaskStack, settings: Settings
) -> None:
    first, second = await asyncio.gather(
        start_web(stack.settings, stack.log_dir), start_web(stack.settings, stack.log_dir)
    )
    try:
        account = await create_account(settings, credits=1000, password=False)
        session = await make_session(account, SLOW)
        body = {"session_id": session.id, "question": "Tell me everything", "stream": True}
        seen: list[Frame] = []
        async with stack.client(account) as client:
            socket = await websockets.connect(f"{first.ws_url}?access_token={account.access_token}")
            assert '"ready"' in await socket.recv()
            ragflow = await websockets.connect(
                f"ws://127.0.0.1:{first.port}/v1/ws/chat?token={account.access_token}"
            )
            question = {"model": SLOW, "messages": [{"role": "user", "content": "Go on"}]}
            in_flight = asyncio.create_task(
                client.post(f"{first.base_url}/v1/chat/completions", json=question)
            )
            async with (
                client.stream("POST", f"{first.base_url}/api/v1/tasks", json=body) as response,
                client.stream("GET", f"{first.base_url}/api/v1/events") as feed,
            ):
                assert response.status_code == 200 and feed.status_code == 200
                feed_frames = frames(feed)
                assert (await anext(feed_frames)).retry is not None  # the feed is open
                task_id = response.headers["X-Task-ID"]
                received = frames(response)
                async for frame in received:
                    seen.append(frame)
                    if sum(f.id is not None for f in seen) == 3:
                        break
                await generating(account.id, count=2)  # the completion is in flight
                first.server.process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                async with asyncio.timeout(PROMPT_SECONDS):
                    seen += [frame async for frame in received]
                stream_ended = time.monotonic() - signalled
                async with asyncio.timeout(PROMPT_SECONDS):
                    feed_rest = [frame async for frame in feed_frames]
            # The document feed ends the same way: the hint, nothing else.
            assert feed_rest and feed_rest[-1].retry == 500, feed_rest
            assert "reconnect" in (feed_rest[-1].comment or "")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(PROMPT_SECONDS):
                    while True:
                        await socket.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            assert "reconnect" in closed.value.rcvd.reason
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(PROMPT_SECONDS):
                    await ragflow.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012

            assert not any(frame.terminal for frame in seen), seen[-3:]
            hint = seen[-1]
            assert hint.id is None and hint.event is None, hint
            assert hint.retry == 500 and "reconnect" in (hint.comment or ""), hint
            assert stream_ended < PROMPT_SECONDS
            redis = aioredis.from_url(stack.settings.redis_url)
            try:
                lease = await redis.exists(task_lease_key(stack.settings.redis_prefix, task_id))
                assert lease == 0, "the drained stream kept its lease"
            finally:
                await redis.aclose()
            with pytest.raises(httpx.TransportError):  # no longer accepting
                await client.get(f"{first.base_url}/healthz")

            last_id = [frame.id for frame in seen if frame.id is not None][-1]
            resumed: list[Frame] = []
            async with client.stream(
                "GET",
                f"{second.base_url}/api/v1/tasks/{task_id}/stream",
                headers={"Last-Event-ID": last_id},
            ) as response:
                assert response.status_code == 200, await response.aread()
                async for frame in frames(response):
                    if frame.id is not None:
                        resumed.append(frame)
            completed = await in_flight
            assert completed.status_code == 200, completed.text
            assert completed.json()["choices"][0]["message"]["content"]
        # The process ends by itself once its requests are done, not at the drain limit.
        exit_code = await asyncio.to_thread(first.server.process.wait, DRAIN_SECONDS / 2)
        assert exit_code == 0, first.server.log_tail()
        assert "open streams told to reconnect" in first.server.log_path.read_text()
        assert [frame.event for frame in resumed if frame.terminal] == ["done"]
        delivered = [frame.id for frame in seen + resumed if frame.id is not None]
        redis = aioredis.from_url(stack.settings.redis_url)
        try:
            key = task_events_key(stack.settings.redis_prefix, task_id)
            stored = [entry_id.decode() for entry_id, _ in await redis.xrange(key)]
        finally:
            await redis.aclose()
        assert delivered == stored, "an entry was lost or delivered twice"
        assert sorted(delivered, key=position) == delivered
    finally:
        for web in (first, second):
            web.server.stop()


async def test_sigterm_drains_every_process_of_a_multi_process_web_server(
    stack: TaskStack, settings: Settings
) -> None:
    """WEB_CONCURRENCY=2: the supervising process passes the stop on to both serving
    processes; each ends its streams with the hint, and all exit 0."""
    web = await start_web(stack.settings, stack.log_dir, workers=2)
    try:
        account = await create_account(settings, credits=10, password=False)
        async with stack.client(account) as client:
            feeds = [await stack_enter(client, f"{web.base_url}/api/v1/events") for _ in range(4)]
            web.server.process.send_signal(signal.SIGTERM)
            for response, received in feeds:
                async with asyncio.timeout(PROMPT_SECONDS):
                    rest = [frame async for frame in received]
                await response.aclose()
                assert rest and rest[-1].retry == 500, rest
        exit_code = await asyncio.to_thread(web.server.process.wait, DRAIN_SECONDS / 2)
        assert exit_code == 0, web.server.log_tail()
        log = web.server.log_path.read_text()
        assert log.count("open streams told to reconnect") == 2, log[-2000:]
    finally:
        web.server.stop()


async def stack_enter(
    client: httpx.AsyncClient, url: str
) -> tuple[httpx.Response, AsyncIterator[Frame]]:
    """An open SSE response and its frames, past the opening one."""
    response = await client.send(client.build_request("GET", url), stream=True)
    assert response.status_code == 200
    received = frames(response)
    assert (await anext(received)).retry is not None
    return response, received
