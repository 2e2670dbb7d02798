"""A chat worker killed with SIGKILL mid-stream: the task ends `failed` within a bounded
time, the reader gets a terminal `error`, and the hold is released exactly once."""

from __future__ import annotations

import time

from backend.models import CreditEntry, CreditReservation, Task
from backend.models.credits import CreditReason, ReservationState
from backend.models.tasks import TaskState
from backend.services.task_recovery import WORKER_LOST
from backend.settings import Settings
from tests.support.accounts import create_account
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.sse_client import Frame, events
from tests.support.task_models import SLOW
from tests.support.task_stack import TaskStack
from tests.test_tasks import make_session

# Heartbeat TTL (2 s) + reap interval (1 s) + worker start-up and slack.
RECOVERY_BOUND_SECONDS = 15


async def test_worker_killed_mid_stream_fails_the_task_and_releases_credits_once(
    stack: TaskStack, settings: Settings
) -> None:
    account = await create_account(settings, credits=1000, password=False)
    session = await make_session(account, SLOW)
    victim = stack.workers.pop()
    frames: list[Frame] = []
    async with stack.client(account) as client:
        body = {"session_id": session.id, "question": "Tell me everything", "stream": True}
        async with client.stream("POST", "/api/v1/tasks", json=body) as response:
            assert response.status_code == 200
            async for frame in events(response):
                frames.append(frame)
                if len(frames) == 3:
                    assert await balance_of(account.id) < 1000
                    stack.kill(victim)
                    killed_at = time.perf_counter()
                    await stack.start_worker()
                if frame.terminal:
                    ended_at = time.perf_counter()
                    break
        task_id = (
            response.headers.get("X-Task-ID") or (await Task.filter(user_id=account.id).first()).id
        )
        status = (await client.get(f"/api/v1/tasks/{task_id}")).json()["data"]

    assert frames[-1].event == "error"
    assert frames[-1].data["code"] == WORKER_LOST
    assert sum(frame.terminal for frame in frames) == 1
    assert ended_at - killed_at < RECOVERY_BOUND_SECONDS
    assert status["status"] == "failed"
    assert status["error"]["code"] == WORKER_LOST

    task = await Task.get(id=task_id)
    assert task.state == TaskState.FAILED
    reservation = await CreditReservation.get(id=task.reservation_id)
    assert reservation.state == ReservationState.RELEASED
    refunds = await CreditEntry.filter(task_id=task_id, reason=CreditReason.RELEASE).count()
    assert refunds == 1
    assert await balance_of(account.id) == 1000
    await assert_ledger_balanced()


async def test_reaper_leaves_healthy_generations_alone(
    stack: TaskStack, settings: Settings
) -> None:
    """Tasks that run longer than the heartbeat TTL on a live worker are not reaped."""
    account = await create_account(settings, credits=1000, password=False)
    session = await make_session(account, SLOW)
    async with stack.client(account) as client:
        body = {"session_id": session.id, "question": "Go", "stream": True}
        started = time.perf_counter()
        async with client.stream("POST", "/api/v1/tasks", json=body) as response:
            async for frame in events(response):
                if time.perf_counter() - started > 4:
                    break
                assert not frame.terminal, frame
        task = await Task.filter(user_id=account.id).first()
        assert task.state == TaskState.RUNNING
        assert (await client.post(f"/api/v1/tasks/{task.id}/cancel")).status_code == 200
