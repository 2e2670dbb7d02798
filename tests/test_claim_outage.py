"""A task whose claim meets the database unavailable is answered once it is back.

Seen in a long chaos run (bench/bench_chaos.py, 120 answers under 47 faults): a chat job
that arrived while PostgreSQL restarted failed its claim at once; the job is delivered
once, so the task stayed `queued` and its client waited for the queued timeout. Here the
real fault is the SQLite write lock held by another process past the processes' busy
timeout (a database that cannot be written, as a restarting PostgreSQL) when a live
worker takes the job: it retries the claim, logs the outage once, and answers once the
lock is released.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from tests.support.accounts import create_account
from tests.support.answers import assert_answered_as_streamed
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.sse_client import Frame, events
from tests.support.task_models import SLOW
from tests.support.task_stack import TaskStack, stack_fixture
from tests.test_tasks import make_session

pytestmark = pytest.mark.sqlite_only

# The processes give up waiting for the lock after 0.3 s, as on a dead server.
stack = stack_fixture("claim", slow_tokens=10, database_options="?busy_timeout=300")


async def wait_for_log(stack: TaskStack, words: str, within: float = 30.0) -> str:
    worker = stack.workers[-1]
    for _ in range(int(within / 0.1)):
        log = worker.log_path.read_text()
        if words in log:
            return log
        await asyncio.sleep(0.1)
    raise AssertionError(f"the worker never logged {words!r}:\n{worker.log_tail()}")


async def test_a_claim_that_meets_a_locked_database_is_retried(
    stack: TaskStack, settings: Settings
) -> None:
    account = await create_account(settings, credits=10_000, password=False)
    session = await make_session(account, SLOW)
    path = stack.settings.database_url.removeprefix("sqlite://").partition("?")[0]
    stack.kill(stack.workers.pop())  # no worker: the job waits in the queue
    frames: list[Frame] = []
    task_id: list[str] = []
    submitted = asyncio.Event()

    async def read() -> None:
        async with stack.client(account) as client:
            body = {"session_id": session.id, "question": "Tell me", "stream": True}
            async with client.stream("POST", "/api/v1/tasks", json=body) as response:
                assert response.status_code == 200
                task_id.append(response.headers["X-Task-ID"])
                submitted.set()
                async for frame in events(response):
                    frames.append(frame)
                    if frame.terminal:
                        return

    reading = asyncio.create_task(read())
    await asyncio.wait_for(submitted.wait(), timeout=10)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        await stack.start_worker()
        await wait_for_log(stack, "The database (claiming a task) is unreachable")
        assert (await Task.get(id=task_id[0])).state is TaskState.QUEUED
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await asyncio.wait_for(reading, timeout=30)

    task = await assert_answered_as_streamed(task_id[0], frames)
    assert task.attempts == 1
    assert await balance_of(account.id) == 10_000 - task.cost
    await assert_ledger_balanced()
    log = await wait_for_log(stack, "The database (claiming a task) is back after")
    assert log.count("The database (claiming a task) is unreachable") == 1, log
