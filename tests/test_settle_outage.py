"""A finished answer is kept through a database outage (issue 18 item 3).

Before: the database unavailable when an answer completed → the worker's transaction
failed, its heartbeat expired and the reaper failed the task `worker_lost` once the
database was back, after the client had shown the whole answer; nothing stored or
billed. Here the real fault is the SQLite write lock held by another process past the
processes' busy timeout (the database that cannot be written, as a PostgreSQL restart
is) while a live chat worker finishes an answer: the worker retries the settling
transaction, keeping the heartbeat, and settles the answer once the lock is released.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from backend.models import CreditReservation
from backend.models.credits import ReservationState
from backend.settings import Settings
from tests.support.accounts import create_account
from tests.support.answers import assert_answered_as_streamed
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.sse_client import Frame, events
from tests.support.task_models import SLOW
from tests.support.task_stack import TaskStack, stack_fixture
from tests.test_tasks import make_session

pytestmark = pytest.mark.sqlite_only

# 40 tokens at 20/s: the answer completes about 2 s in, while the lock is held.
SLOW_TOKENS = 40
# Longer than the heartbeat TTL (2 s) and the reap interval (1 s) of the stack, and than
# the ~7.5 s the credits transaction's own retries of a locked database wait (8 tries).
LOCK_SECONDS = 12.0


# The processes give up waiting for the lock after 0.3 s, as on a dead server.
stack = stack_fixture("settle", slow_tokens=SLOW_TOKENS, database_options="?busy_timeout=300")


async def test_an_answer_completed_while_the_database_is_locked_is_settled_after(
    stack: TaskStack, settings: Settings
) -> None:
    account = await create_account(settings, credits=10_000, password=False)
    session = await make_session(account, SLOW)
    path = stack.settings.database_url.removeprefix("sqlite://").partition("?")[0]
    frames: list[Frame] = []
    task_id = await answer_under_lock(stack, account, session.id, path, frames)
    task = await assert_answered_as_streamed(task_id, frames)
    reservation = await CreditReservation.get(id=task.reservation_id)
    assert reservation.state is ReservationState.SETTLED
    assert await balance_of(account.id) == 10_000 - task.cost
    await assert_ledger_balanced()
    log = stack.workers[0].log_path.read_text()
    assert log.count("The database (settling a task) is unreachable") == 1, log


async def answer_under_lock(
    stack: TaskStack, account: Any, session_id: str, path: str, frames: list[Frame]
) -> str:
    """Stream the answer into `frames`, locking the database after its first events for
    LOCK_SECONDS; the task's id."""
    async with stack.client(account) as client:
        body = {"session_id": session_id, "question": "Tell me everything", "stream": True}
        async with client.stream("POST", "/api/v1/tasks", json=body) as response:
            task_id = response.headers["X-Task-ID"]
            holder: sqlite3.Connection | None = None
            async for frame in events(response):
                frames.append(frame)
                if len(frames) == 2:
                    holder = sqlite3.connect(path, isolation_level=None)
                    holder.execute("BEGIN IMMEDIATE")
                    release = asyncio.get_running_loop().call_later(
                        LOCK_SECONDS, lambda h=holder: (h.execute("ROLLBACK"), h.close())
                    )
                if frame.terminal:
                    break
            release.cancel()
            if holder is not None:
                with_lock_released(holder)
    return task_id


def with_lock_released(holder: sqlite3.Connection) -> None:
    """Close the holder if the timer has not (the stream ended before it fired)."""
    try:
        holder.execute("ROLLBACK")
        holder.close()
    except sqlite3.Error:
        pass
