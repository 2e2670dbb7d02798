"""The fate of answers under the reaper, with real parts: a private Redis (append-only)
under a live web process and chat worker, a slow fake provider.

- Redis paused (SIGSTOP) or restarted past the heartbeat TTL mid-answer: every heartbeat
  has expired when Redis answers again, though the worker is alive. Before, the reaper
  (which took one look at a missing heartbeat for death) failed the answer `worker_lost`
  after the client had seen it whole: nothing stored or billed. Now the answer is not
  reaped, settles `succeeded` once, stored as streamed, billed once.
- The worker killed (SIGKILL) mid-answer: reaped within a bound as before, and what it
  had streamed is stored as the (partial) assistant message that the `error` names, not
  billed.

About 12 s a test (50 s the module, SQLite pass only): the faults must outlast the heartbeat
TTL (2 s), one also the socket timeout (5 s), and the answer must outlast the faults.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import redis.asyncio as aioredis

from backend.constants import task_heartbeat_key
from backend.models import CreditReservation, Message, Task
from backend.models.chats import Role
from backend.models.credits import ReservationState
from backend.models.tasks import TaskState
from backend.services.task_recovery import WORKER_LOST
from backend.settings import Settings
from tests.support.accounts import create_account
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.private_redis import PrivateRedis, running_private_redis
from tests.support.sse_client import Frame, events
from tests.support.task_models import SLOW
from tests.support.task_stack import TaskStack, task_stack
from tests.test_tasks import make_session

# The faults are the same on either database; the SQL transitions are covered on both by
# the in-process tests (tests/test_reaper_sightings.py).
pytestmark = pytest.mark.sqlite_only

# 200 tokens at 20/s: about 10 s of answer, still running when the longest fault ends.
SLOW_TOKENS = 200
CREDITS = 10_000
# Heartbeat TTL (2 s) + confirmation (2 heartbeat intervals, 2 s) + two reap intervals
# (1 s each) + a new worker's start-up and slack: as tests/test_crash_recovery.py.
RECOVERY_BOUND_SECONDS = 15
# How long a client keeps resuming a stream a fault broke.
RESUME_WITHIN_SECONDS = 30


@dataclass
class OutageStack:
    stack: TaskStack
    redis: PrivateRedis


@pytest.fixture(scope="module")
async def outage(
    app, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[OutageStack]:
    async with (
        running_private_redis(tmp_path_factory.mktemp("reaper-redis")) as server,
        task_stack(
            settings,
            tmp_path_factory.mktemp("reaper-outage"),
            slow_tokens=SLOW_TOKENS,
            redis_url=server.url,
        ) as stack,
    ):
        yield OutageStack(stack, server)


async def read_to_the_end(
    client: httpx.AsyncClient, source: AsyncIterator[Frame], task_id: str, frames: list[Frame]
) -> None:
    """The rest of the answer's events into `frames`: from `source`, then, if a fault
    broke the stream before its ending, resumed from the last event as a client does
    (503 while Redis is away)."""
    deadline = time.monotonic() + RESUME_WITHIN_SECONDS
    while True:
        try:
            async for frame in source:
                frames.append(frame)
                if frame.terminal:
                    return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"no ending: {frames[-3:]}"
        await asyncio.sleep(0.5)
        last = frames[-1].id if frames else "0-0"
        try:
            async with client.stream(
                "GET", f"/api/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": last}
            ) as resumed:
                if resumed.status_code == 200:
                    await read_to_the_end(client, events(resumed), task_id, frames)
                    return
        except httpx.HTTPError:
            pass
        source = empty()


async def empty() -> AsyncIterator[Frame]:
    return
    yield


async def fault(
    server: PrivateRedis, kind: str, seconds: float, heartbeat: str, observer: aioredis.Redis
) -> bool:
    """Pause (SIGSTOP) or restart (a graceful stop, then a start on the same append-only
    file) the server for `seconds`; whether the task's heartbeat was missing when it
    answered again (a look sent while it was away, as a reaper's would be: a one-look
    rule would have failed the answer then)."""
    assert server.process is not None
    if kind == "restarted":
        server.process.terminate()
        await asyncio.to_thread(server.process.wait, 10)
        await asyncio.sleep(seconds)
        await server.start()
        return not await observer.exists(heartbeat)
    server.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds - 0.5)
        look = asyncio.create_task(observer.exists(heartbeat))
        await asyncio.sleep(0.5)
    finally:
        server.process.send_signal(signal.SIGCONT)
    try:
        return not await look
    except aioredis.RedisError:  # the look timed out during the pause: no sighting
        return False


async def time_to_beat(observer: aioredis.Redis, heartbeat: str) -> float:
    """Seconds until the heartbeat is there again, looking every 20 ms."""
    started = time.perf_counter()
    while not await observer.exists(heartbeat):
        assert time.perf_counter() - started < RESUME_WITHIN_SECONDS
        await asyncio.sleep(0.02)
    return time.perf_counter() - started


def streamed_text(frames: list[Frame]) -> str:
    return "".join(f.data["delta"] for f in frames if f.event == "token")


@pytest.mark.parametrize(
    ("kind", "seconds"),
    [
        # Past the TTL (2 s), under the socket timeout (5 s): commands hang, then complete.
        ("paused", 4.0),
        # Past both: commands time out and are retried.
        ("paused", 7.0),
        # Down past the TTL: commands are refused, then reconnect.
        ("restarted", 4.0),
    ],
)
async def test_a_redis_outage_past_the_heartbeat_ttl_reaps_no_live_answer(
    outage: OutageStack, settings: Settings, kind: str, seconds: float
) -> None:
    stack = outage.stack
    account = await create_account(settings, credits=CREDITS, password=False)
    session = await make_session(account, SLOW)
    frames: list[Frame] = []
    observer = aioredis.from_url(outage.redis.url)
    try:
        async with stack.client(account) as client:
            body = {"session_id": session.id, "question": "Tell me everything", "stream": True}
            async with client.stream("POST", "/api/v1/tasks", json=body) as response:
                assert response.status_code == 200
                task_id = response.headers["X-Task-ID"]
                heartbeat = task_heartbeat_key(stack.settings.redis_prefix, task_id)
                source = events(response)
                async for frame in source:
                    frames.append(frame)
                    if len(frames) == 3:
                        break
                missing = await fault(outage.redis, kind, seconds, heartbeat, observer)
                beat_again = await time_to_beat(observer, heartbeat)
                await read_to_the_end(client, source, task_id, frames)
    finally:
        await observer.aclose()
    print(
        f"{kind} {seconds} s: heartbeat missing when Redis answered again: {missing}; "
        f"beating again {beat_again:.2f} s after"
    )
    # What the rule relies on: the live worker beats again well within the confirmation,
    # on its first tick after the fault, not at its next scheduled beat (before: 0.8 s).
    assert beat_again < stack.settings.task_heartbeat_interval_seconds / 2, beat_again

    assert [f.event for f in frames if f.terminal] == ["done"], frames[-1]
    done = frames[-1].data
    task = await Task.get(id=task_id)
    assert task.state is TaskState.SUCCEEDED, (task.error_code, task.error_message)
    stored = await Message.filter(task_id=task_id, role=Role.ASSISTANT)
    assert [m.id for m in stored] == [task.message_id] == [done["message_id"]]
    assert stored[0].content == [
        {"type": "text", "text": done.get("answer") or streamed_text(frames)}
    ]
    reservation = await CreditReservation.get(id=task.reservation_id)
    assert reservation.state is ReservationState.SETTLED
    assert task.cost == done["cost"] > 0
    assert await balance_of(account.id) == CREDITS - task.cost
    await assert_ledger_balanced()
    for worker in stack.workers:
        assert worker.process.poll() is None, worker.log_tail()
        assert "reaped a task whose worker died" not in worker.log_path.read_text()


async def test_a_killed_worker_s_answer_is_reaped_and_its_partial_text_kept_unbilled(
    outage: OutageStack, settings: Settings
) -> None:
    stack = outage.stack
    account = await create_account(settings, credits=CREDITS, password=False)
    session = await make_session(account, SLOW)
    victim = stack.workers.pop()
    frames: list[Frame] = []
    async with stack.client(account) as client:
        body = {"session_id": session.id, "question": "Tell me everything", "stream": True}
        async with client.stream("POST", "/api/v1/tasks", json=body) as response:
            assert response.status_code == 200
            task_id = response.headers["X-Task-ID"]
            source = events(response)
            async for frame in source:
                frames.append(frame)
                if sum(f.event == "token" for f in frames) == 3:
                    assert await balance_of(account.id) < CREDITS
                    stack.kill(victim)
                    killed_at = time.perf_counter()
                    break
            await stack.start_worker()
            await read_to_the_end(client, source, task_id, frames)
            ended_at = time.perf_counter()
    print(f"killed worker's answer reaped in {ended_at - killed_at:.1f} s")

    assert [f.event for f in frames if f.terminal] == ["error"]
    error = frames[-1].data
    assert error["code"] == WORKER_LOST
    assert ended_at - killed_at < RECOVERY_BOUND_SECONDS
    task = await Task.get(id=task_id)
    assert task.state is TaskState.FAILED and task.error_code == WORKER_LOST
    # What the client saw is what is kept, named by the error event, as cancel does.
    assert error["message_id"] == task.message_id is not None
    message = await Message.get(id=task.message_id)
    assert message.role is Role.ASSISTANT and message.task_id == task_id
    assert message.content == [{"type": "text", "text": streamed_text(frames)}]
    assert streamed_text(frames)
    # Not billed: the failure is ours.
    assert task.cost == 0
    reservation = await CreditReservation.get(id=task.reservation_id)
    assert reservation.state is ReservationState.RELEASED
    assert await balance_of(account.id) == CREDITS
    await assert_ledger_balanced()
