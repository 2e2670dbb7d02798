"""Exactly one terminal event, whatever Redis does (issue 18 item 2).

Seen before: Redis restarted mid-answer, the worker's final append failed and was not
retried; the task was `failed` in SQL while every reader, resumes included, got 200 and
heartbeats for the stream's hour. Here a private Redis (append-only, so the stream
survives) is killed under a live web process and chat worker while an answer streams:

- the worker retries its ending until Redis is back: the stream gets one `error` with no
  reader asking for it, and the worker lives on;
- a worker killed while it retries leaves the task settled in SQL and its stream without
  an ending: a resuming reader gets the ending made from SQL at once, not heartbeats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from backend.constants import task_events_key
from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from tests.support.accounts import create_account
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.private_redis import PrivateRedis, running_private_redis
from tests.support.sse_client import Frame, events
from tests.support.task_models import SLOW
from tests.support.task_stack import TaskStack, task_stack
from tests.test_tasks import make_session

pytestmark = pytest.mark.sqlite_only

OUTAGE_SECONDS = 2.0
SETTLE_TIMEOUT_SECONDS = 20.0
# Readers heartbeat every 5 s here: an ending that comes within 2 s did not wait on one.
HEARTBEAT_SECONDS = 5.0
PROMPT_SECONDS = 2.0


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    """A redis-server of this test's own, to kill and start again (append-only)."""
    async with running_private_redis(tmp_path) as server:
        yield server


@pytest.fixture
async def outage_stack(
    app, settings: Settings, redis_server: PrivateRedis, tmp_path: Path
) -> AsyncIterator[TaskStack]:
    async with task_stack(
        settings,
        tmp_path,
        redis_url=redis_server.url,
        sse_heartbeat_seconds=HEARTBEAT_SECONDS,
        # The worker gives the answer up at the first failed append (the default rides
        # the outage out: tests/test_answer_redis_outage.py); its ending is what is tested.
        redis_outage_tolerance_seconds=0,
    ) as stack:
        yield stack


async def first_frames(stack: TaskStack, client: httpx.AsyncClient, session_id: str) -> str:
    """Start an answer, read three events, hang up; the task's id."""
    body = {"session_id": session_id, "question": "Tell me everything", "stream": True}
    seen: list[Frame] = []
    async with client.stream("POST", "/api/v1/tasks", json=body) as response:
        assert response.status_code == 200
        async for frame in events(response):
            seen.append(frame)
            if len(seen) == 3:
                break
    return response.headers["X-Task-ID"]


async def settled(task_id: str) -> Task:
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        task = await Task.get(id=task_id)
        if task.state.terminal:
            return task
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} did not settle")


async def stream_types(settings: Settings, task_id: str) -> list[str]:
    client = aioredis.from_url(settings.redis_url)
    try:
        rows = await client.xrange(task_events_key(settings.redis_prefix, task_id))
    finally:
        await client.aclose()
    return [fields[b"type"].decode() for _, fields in rows]


async def wait_for_ending(settings: Settings, task_id: str, within: float) -> list[str]:
    deadline = time.monotonic() + within
    while True:
        types = await stream_types(settings, task_id)
        if types and types[-1] in ("done", "error", "cancelled"):
            return types
        if time.monotonic() > deadline:
            return types
        await asyncio.sleep(0.1)


async def test_a_worker_retries_its_ending_through_a_redis_restart(
    outage_stack: TaskStack, redis_server: PrivateRedis, settings: Settings
) -> None:
    stack = outage_stack
    account = await create_account(settings, credits=1000, password=False)
    session = await make_session(account, SLOW)
    async with stack.client(account) as client:
        task_id = await first_frames(stack, client, session.id)
        redis_server.kill()
        task = await settled(task_id)  # the worker's next token append failed
        assert task.state is TaskState.FAILED
        await asyncio.sleep(OUTAGE_SECONDS)
        await redis_server.start()
        # No reader asks: the worker's own retry writes the ending.
        types = await wait_for_ending(stack.settings, task_id, within=SETTLE_TIMEOUT_SECONDS)
        assert types[-1] == "error", types
        assert sum(t in ("done", "error", "cancelled") for t in types) == 1, types
        # A resume gets that one ending.
        async with client.stream(
            "GET", f"/api/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": "0-0"}
        ) as response:
            got = [frame async for frame in events(response)]
        assert [f.event for f in got if f.terminal] == ["error"]
        assert got[-1].data["code"] == task.error_code
    worker = stack.workers[0]
    assert worker.process.poll() is None, worker.log_tail()
    log = worker.log_path.read_text()
    assert log.count("appending a task's terminal event) is unreachable") == 1, log
    assert await balance_of(account.id) == 1000
    await assert_ledger_balanced()


async def test_a_reader_gets_the_ending_from_sql_when_its_ender_died(
    outage_stack: TaskStack, redis_server: PrivateRedis, settings: Settings
) -> None:
    stack = outage_stack
    account = await create_account(settings, credits=1000, password=False)
    session = await make_session(account, SLOW)
    async with stack.client(account) as client:
        task_id = await first_frames(stack, client, session.id)
        redis_server.kill()
        task = await settled(task_id)
        stack.kill(stack.workers.pop())  # dies while it retries the ending
        await redis_server.start()
        assert (await stream_types(stack.settings, task_id))[-1] == "token"
        started = time.perf_counter()
        async with (
            asyncio.timeout(3 * HEARTBEAT_SECONDS),  # without the fix: heartbeats for ever
            client.stream(
                "GET", f"/api/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": "0-0"}
            ) as response,
        ):
            assert response.status_code == 200
            got = [frame async for frame in events(response)]
        waited = time.perf_counter() - started
    assert waited < PROMPT_SECONDS, waited
    assert [f.event for f in got if f.terminal] == ["error"]
    assert got[-1].data == {"code": task.error_code, "message": task.error_message}
    types = await stream_types(stack.settings, task_id)
    assert sum(t in ("done", "error", "cancelled") for t in types) == 1, types
    assert await balance_of(account.id) == 1000
    await assert_ledger_balanced()
