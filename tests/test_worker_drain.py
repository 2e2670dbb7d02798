"""A chat worker's SIGTERM drains (issue 18 item 6): before, in-flight answers were
abandoned within ~30 ms and every deploy failed every answer in progress.

A live web process and chat worker A stream a slow answer; A gets SIGTERM mid-answer.
A second answer asked after the signal is left queued by A and answered by worker B,
started only then (a rolling restart). A finishes its answer (one `done`, the text the
client saw stored once, billed once) and then exits by itself.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from backend.models import CreditReservation, Task
from backend.models.credits import ReservationState
from backend.models.tasks import TaskState
from backend.settings import Settings
from tests.support.accounts import create_account
from tests.support.answers import assert_answered_as_streamed
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.sse_client import Frame, events
from tests.support.task_models import CHEAP, SLOW
from tests.support.task_stack import TaskStack, stack_fixture
from tests.test_tasks import make_session

pytestmark = pytest.mark.sqlite_only

# The slow answer: 100 tokens at 20/s, about 5 s, well inside the drain.
SLOW_TOKENS = 100
DRAIN_SECONDS = 30
EXIT_TIMEOUT_SECONDS = 20.0


stack = stack_fixture("drain", slow_tokens=SLOW_TOKENS, worker_drain_seconds=DRAIN_SECONDS)


async def test_sigterm_lets_the_answer_in_progress_finish_and_leaves_queued_ones(
    stack: TaskStack, settings: Settings
) -> None:
    account = await create_account(settings, credits=10_000, password=False)
    slow_session = await make_session(account, SLOW)
    fast_session = await make_session(account, CHEAP)
    draining = stack.workers[0]
    frames: list[Frame] = []
    async with stack.client(account) as client:
        body = {"session_id": slow_session.id, "question": "Tell me everything", "stream": True}
        async with client.stream("POST", "/api/v1/tasks", json=body) as response:
            assert response.status_code == 200
            task_id = response.headers["X-Task-ID"]
            async for frame in events(response):
                frames.append(frame)
                if len(frames) == 3:
                    draining.signal(signal.SIGTERM)
                    signalled = time.monotonic()
                    # Asked after the signal: the draining worker must leave it queued.
                    queued = await client.post(
                        "/api/v1/tasks", json={"session_id": fast_session.id, "question": "Hi"}
                    )
                    assert queued.status_code in (200, 201, 202), queued.text
                    queued_id = queued.json()["data"]["task_id"]
                    await asyncio.sleep(1.0)
                    assert (await Task.get(id=queued_id)).state is TaskState.QUEUED
                    await stack.start_worker()  # the new replica of a rolling restart
                if frame.terminal:
                    break
        assert draining.process.wait(EXIT_TIMEOUT_SECONDS) == 0, draining.log_tail()
        exited_after = time.monotonic() - signalled

    task = await assert_answered_as_streamed(task_id, frames)
    reservation = await CreditReservation.get(id=task.reservation_id)
    assert reservation.state is ReservationState.SETTLED
    assert task.cost > 0

    deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
    while (other := await Task.get(id=queued_id)).state is not TaskState.SUCCEEDED:
        assert time.monotonic() < deadline, other.state
        await asyncio.sleep(0.1)
    assert await balance_of(account.id) == 10_000 - task.cost - other.cost
    await assert_ledger_balanced()
    assert exited_after < DRAIN_SECONDS
    assert "SIGTERM: draining; 1 jobs in progress" in draining.log_path.read_text()
