"""A Redis that stops answering (SIGSTOP: a stalled server, a failover in progress) does
not hang the web process (issue 18 item 4).

Before: the shared pools had a connect timeout but no read timeout, so with Redis paused
every request that touched it, `/readyz` included, waited until Redis came back, and an
open stream's connection with it. Here a private Redis is paused under a live Hypercorn
and chat worker while an answer streams (REDIS_SOCKET_TIMEOUT_SECONDS=1 s):

- a request needing Redis answers 503 with Retry-After naming Redis within the timeout
  and a margin, on a keep-alive connection that serves again once Redis is resumed;
- `/readyz` answers 503 naming Redis within 2 s;
- the open stream ends with a reconnect hint (a comment and `retry:`), never a terminal
  event, and a resume with its Last-Event-ID after SIGCONT gets the rest, one ending;
- an open OpenAI-compatible stream (no resume) ends with an error chunk and `[DONE]`;
- a WebSocket command answers a 503 `error` and the socket stays open: it is answered
  again once Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import httpx
import pytest
import websockets

from backend.services.completions import STREAM_INTERRUPTED
from backend.settings import Settings
from tests.support.accounts import create_account
from tests.support.private_redis import PrivateRedis, running_private_redis
from tests.support.sse_client import Frame, frames
from tests.support.task_models import SLOW
from tests.support.task_stack import TaskStack, task_stack
from tests.test_tasks import make_session

pytestmark = pytest.mark.sqlite_only

SOCKET_TIMEOUT_SECONDS = 1.0
# A request's answer: the socket timeout, plus the time to fail over to the 503.
ANSWER_BOUND_SECONDS = SOCKET_TIMEOUT_SECONDS + 2.0
READY_BOUND_SECONDS = 2.0
# The stream notices at its next lease refresh (a third of the 3 s lease), then times out.
STREAM_END_BOUND_SECONDS = 1.0 + SOCKET_TIMEOUT_SECONDS + 3.0
RECOVERY_SECONDS = 20.0
REDIS_DOWN = "Redis (queues and streams) is unavailable; retry shortly"


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    async with running_private_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def paused_stack(
    app, settings: Settings, redis_server: PrivateRedis, tmp_path: Path
) -> AsyncIterator[TaskStack]:
    async with task_stack(
        settings,
        tmp_path,
        redis_url=redis_server.url,
        redis_socket_timeout_seconds=SOCKET_TIMEOUT_SECONDS,
        stream_lease_seconds=3.0,
    ) as stack:
        yield stack


def local_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_a_paused_redis_is_a_prompt_503_and_streams_end_with_a_reconnect_hint(
    paused_stack: TaskStack, redis_server: PrivateRedis, settings: Settings
) -> None:
    stack = paused_stack
    account = await create_account(settings, credits=1000, password=False)
    session = await make_session(account, SLOW)
    one = httpx.Limits(max_connections=1)
    async with stack.client(account, limits=one) as api, stack.client(account) as streamer:
        assert (await api.get("/api/v1/users/me")).status_code == 200
        body = {"session_id": session.id, "question": "Tell me everything", "stream": True}
        seen: list[Frame] = []
        compat_seen: list[Frame] = []
        messages = [{"role": "user", "content": "Tell me everything"}]
        compat_body = {"model": SLOW, "messages": messages, "stream": True}
        async with (
            streamer.stream("POST", "/api/v1/tasks", json=body) as response,
            streamer.stream("POST", "/v1/chat/completions", json=compat_body) as compat,
        ):
            assert response.status_code == 200 and compat.status_code == 200
            task_id = response.headers["X-Task-ID"]
            received = frames(response)
            async for frame in received:
                seen.append(frame)
                if sum(f.id is not None for f in seen) == 3:
                    break
            compat_received = frames(compat)
            async for frame in compat_received:
                compat_seen.append(frame)
                if len(compat_seen) == 3:
                    break
            socket = await websockets.connect(
                f"{stack.server.ws_url}?access_token={account.access_token}"
            )
            assert json.loads(await socket.recv())["type"] == "ready"
            assert redis_server.process is not None
            redis_server.process.send_signal(signal.SIGSTOP)
            try:
                question = {"session_id": session.id, "question": "again"}
                refused, took = await timed(api.post("/api/v1/tasks", json=question))
                assert refused.status_code == 503, refused.text
                assert refused.headers["Retry-After"] == "5"
                assert refused.json()["message"] == REDIS_DOWN
                assert took < ANSWER_BOUND_SECONDS, took

                ready, took = await timed(api.get("/readyz"))
                assert ready.status_code == 503, ready.text
                assert "redis" in ready.json()["message"], ready.text
                assert took < READY_BOUND_SECONDS + 0.5, took
                assert local_port(ready) == local_port(refused), (
                    "the keep-alive connection was lost"
                )
                await socket.send(json.dumps({"type": "ping", "ref": "p1"}))
                async with asyncio.timeout(ANSWER_BOUND_SECONDS):
                    socket_refused = json.loads(await socket.recv())
                assert socket_refused["type"] == "error", socket_refused
                assert (socket_refused["code"], socket_refused["message"]) == (503, REDIS_DOWN)

                started = time.monotonic()
                async with asyncio.timeout(STREAM_END_BOUND_SECONDS + 5):
                    rest = [frame async for frame in received]
                ended_after = time.monotonic() - started
                async with asyncio.timeout(STREAM_END_BOUND_SECONDS):
                    compat_rest = [frame async for frame in compat_received]
            finally:
                redis_server.process.send_signal(signal.SIGCONT)
        assert ended_after < STREAM_END_BOUND_SECONDS, ended_after
        assert not any(frame.terminal for frame in seen + rest), rest
        hint = rest[-1]
        assert hint.retry == 5000 and hint.comment and "reconnect" in hint.comment, rest
        # The OpenAI-compatible stream has no resume: it ends with an error the SDK raises.
        assert compat_rest[-1].data_lines == ["[DONE]"], compat_rest[-3:]
        assert compat_rest[-2].data["error"]["message"] == STREAM_INTERRUPTED, compat_rest[-3:]
        last_id = [frame.id for frame in seen + rest if frame.id is not None][-1]

        deadline = time.monotonic() + RECOVERY_SECONDS
        while (again := await api.get("/api/v1/users/me")).status_code != 200:
            assert time.monotonic() < deadline, again.text
            await asyncio.sleep(0.2)
        assert local_port(again) == local_port(refused), "the keep-alive connection was lost"
        await socket.send(json.dumps({"type": "ping", "ref": "p2"}))
        assert json.loads(await socket.recv()) == {"type": "pong", "ref": "p2"}
        await socket.close()

        resumed: list[Frame] = []
        async with streamer.stream(
            "GET", f"/api/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": last_id}
        ) as response:
            assert response.status_code == 200, await response.aread()
            async for frame in frames(response):
                if frame.id is not None:
                    resumed.append(frame)
    ids = [frame.id for frame in resumed]
    assert ids and ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))), ids
    assert all(tuple(map(int, i.split("-"))) > tuple(map(int, last_id.split("-"))) for i in ids)
    assert [frame.event for frame in resumed if frame.terminal] == ["done"], resumed[-3:]
    assert stack.server.server.process.poll() is None, stack.server.server.log_tail()
    assert stack.workers[0].process.poll() is None, stack.workers[0].log_tail()
    web_log = stack.server.server.log_path.read_text()
    assert "Internal server error" not in web_log
    # The hub's failed reads are one outage, logged when it starts and when it ends.
    assert web_log.count("Redis (stream hub) is unreachable") == 1, web_log[-3000:]
    assert "stream hub read failed" not in web_log
