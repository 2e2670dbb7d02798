"""The reaper in-process against the test Redis and database: a task is reaped only when
its heartbeat is missing at two sightings apart with no sign of life between (a Redis
outage expires live workers' heartbeats all at once), a reaped task keeps what its dead
worker streamed as a partial answer, not charged, and a worker searching the knowledge
bases for longer than the TTL is beating meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from quart import Quart
from tortoise import timezone

from backend.constants import task_heartbeat_key
from backend.errors import BadRequest
from backend.models import CreditReservation, Message, Task
from backend.models.chats import Role
from backend.models.credits import ReservationState
from backend.models.tasks import TaskState
from backend.providers.registry import close_registry, configure_registry
from backend.providers.tokens import count_tokens
from backend.services import task_recovery
from backend.settings import Settings
from backend.streams.endings import ending_from_sql
from backend.streams.task_stream import TaskStream
from schemas.events import ErrorEvent, ReferenceEvent, TokenEvent
from tests.support.accounts import Account, create_account
from tests.support.ledger import assert_ledger_balanced, balance_of, reserve
from tests.support.task_models import CHEAP, with_models
from tests.test_tasks import make_session
from workers.jobs import knowledge
from workers.jobs.chat import RETRIEVAL_FAILED, generate_answer

HOLD = 40


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Heartbeats every 0.1 s (so two sightings 0.2 s apart confirm a death), TTL 1 s:
    the live workers' reapers (TTL 2 s or more, plus their confirmation) leave a task
    this file makes and ends within a second alone."""
    return settings.model_copy(
        update={"task_heartbeat_ttl_seconds": 1, "task_heartbeat_interval_seconds": 0.1}
    )


@pytest.fixture
async def account(app: Quart, settings: Settings) -> Account:
    return await create_account(settings, credits=100, password=False)


async def running_task(account: Account) -> Task:
    """A task a worker claimed 1.5 s ago (past the TTL), holding HOLD credits."""
    session = await make_session(account, CHEAP)
    task = await Task.create(
        user_id=account.id,
        session_id=session.id,
        model=CHEAP,
        state=TaskState.RUNNING,
        started_at=timezone.now() - timedelta(seconds=1.5),
    )
    task.reservation_id = await reserve(account.id, HOLD, task_id=task.id)
    await task.save(update_fields=["reservation_id"])
    return task


async def test_a_heartbeat_seen_missing_once_is_not_a_dead_worker(
    account: Account, redis: aioredis.Redis, fast: Settings
) -> None:
    """Before: the first look at a missing heartbeat failed the task, so every answer in
    progress when a paused Redis came back was thrown away."""
    task = await running_task(account)
    heartbeat = task_heartbeat_key(fast.redis_prefix, task.id)
    confirm = task_recovery.confirm_seconds(fast)

    # Redis is back after an outage: the heartbeat has expired, the worker is alive.
    assert not await task_recovery.reap_if_dead(redis, fast, task.id)
    await redis.set(heartbeat, "1", ex=1)  # it beats again within an interval
    await asyncio.sleep(confirm)
    assert not await task_recovery.reap_if_dead(redis, fast, task.id)
    assert (await Task.get(id=task.id)).state is TaskState.RUNNING

    # Seen alive in between, so a later gap starts the count again.
    await redis.delete(heartbeat)
    assert not await task_recovery.reap_if_dead(redis, fast, task.id)
    assert (await Task.get(id=task.id)).state is TaskState.RUNNING

    # Missing at two sightings `confirm` apart: the worker is dead.
    await asyncio.sleep(confirm)
    assert await task_recovery.reap_if_dead(redis, fast, task.id)
    task = await Task.get(id=task.id)
    assert task.state is TaskState.FAILED and task.error_code == task_recovery.WORKER_LOST
    assert await balance_of(account.id) == 100
    await assert_ledger_balanced()


async def test_a_reaped_answer_keeps_what_was_streamed_as_a_partial_answer_not_charged(
    account: Account, redis: aioredis.Redis, fast: Settings
) -> None:
    task = await running_task(account)
    assert await balance_of(account.id) == 100 - HOLD
    stream = TaskStream.for_task(redis, fast, task.id)
    sources = ReferenceEvent(total=0)
    await stream.append(sources)
    deltas = ["The weir ", "holds the ", "mill race"]
    for delta in deltas:
        await stream.append(TokenEvent(delta=delta))

    assert not await task_recovery.reap_if_dead(redis, fast, task.id)
    await asyncio.sleep(task_recovery.confirm_seconds(fast))
    assert await task_recovery.reap_if_dead(redis, fast, task.id)

    entries = await stream.read_after()
    assert sum(e.terminal for e in entries) == 1
    error = entries[-1].event()
    assert isinstance(error, ErrorEvent) and error.code == task_recovery.WORKER_LOST
    task = await Task.get(id=task.id)
    assert task.state is TaskState.FAILED
    assert error.message_id == task.message_id is not None
    message = await Message.get(id=task.message_id)
    text = "".join(deltas)
    assert message.role is Role.ASSISTANT and message.task_id == task.id
    assert message.content == [{"type": "text", "text": text}]
    assert message.reference == sources.model_dump(mode="json", exclude={"type"})
    assert task.completion_tokens == message.completion_tokens == count_tokens(text)
    # Not charged: the failure is the service's.
    assert task.cost == 0
    reservation = await CreditReservation.get(id=task.reservation_id)
    assert reservation.state is ReservationState.RELEASED
    assert await balance_of(account.id) == 100
    await assert_ledger_balanced()
    # A reader that rebuilds the ending from SQL names the partial answer too.
    rebuilt = await ending_from_sql(task)
    assert rebuilt is not None and rebuilt[-1] == error


async def test_a_task_reaped_before_any_token_stores_no_message(
    account: Account, redis: aioredis.Redis, fast: Settings
) -> None:
    task = await running_task(account)
    assert not await task_recovery.reap_if_dead(redis, fast, task.id)
    await asyncio.sleep(task_recovery.confirm_seconds(fast))
    assert await task_recovery.reap_if_dead(redis, fast, task.id)
    [entry] = await TaskStream.for_task(redis, fast, task.id).read_after()
    assert entry.payload() == {
        "code": task_recovery.WORKER_LOST,
        "message": task_recovery.WORKER_LOST_MESSAGE,
    }
    task = await Task.get(id=task.id)
    assert task.message_id is None
    assert await Message.filter(task_id=task.id).count() == 0
    assert await balance_of(account.id) == 100


@pytest.fixture
async def registry(fast: Settings) -> AsyncIterator[Settings]:
    """The test models (no upstream behind them: this turn never reaches the model)."""
    configured = with_models(fast, "http://127.0.0.1:9/v1")
    configure_registry(configured)
    yield configured
    await close_registry()
    configure_registry(fast)


async def test_a_worker_searching_the_knowledge_bases_past_the_ttl_is_beating(
    app: Quart,
    account: Account,
    redis: aioredis.Redis,
    registry: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: the heartbeat started with the answer's stream, after the rewrite call and
    the search, so a search slower than the TTL and the confirmation was reaped as a dead
    worker's."""
    ctx: dict[str, Any] = {"redis": app.config["REDIS"], "settings": registry}
    session = await make_session(account, CHEAP)
    task = await Task.create(
        user_id=account.id,
        session_id=session.id,
        model=CHEAP,
        request={"messages": [{"role": "user", "content": "Hi"}], "knowledge": {}},
    )
    searching = asyncio.Event()

    async def slow_search(request: object, plan: object) -> None:
        searching.set()
        await asyncio.sleep(3 * registry.task_heartbeat_ttl_seconds)
        raise BadRequest("The dataset is gone")

    monkeypatch.setattr(knowledge, "prepare", slow_search)
    job = asyncio.create_task(generate_answer(ctx, task.id))
    try:
        await asyncio.wait_for(searching.wait(), 10)
        await asyncio.sleep(registry.task_heartbeat_ttl_seconds * 1.5)
        assert await redis.exists(task_heartbeat_key(registry.redis_prefix, task.id))
        assert not await task_recovery.reap_if_dead(redis, registry, task.id)
        await asyncio.sleep(task_recovery.confirm_seconds(registry))
        assert not await task_recovery.reap_if_dead(redis, registry, task.id)
        assert await asyncio.wait_for(job, 10) == "failed"
    finally:
        job.cancel()
        if "watch" in ctx:
            await ctx["watch"].close()
    task = await Task.get(id=task.id)
    assert task.error_code == RETRIEVAL_FAILED, task.error_code
