"""The shared delivery rules (`open_task_reader`, `TaskReader.events`) in-process, with
short lease and heartbeat times: refresh while idle, stop when the lease is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
import redis.asyncio as aioredis
from quart import Quart

from backend.constants import task_heartbeat_key
from backend.errors import Conflict, Gone
from backend.models import Task
from backend.models.tasks import TaskState
from backend.services.task_recovery import reap_if_dead
from backend.settings import Settings
from backend.streams.delivery import open_task_reader
from backend.streams.hub import StreamHub
from backend.streams.task_stream import TaskStream
from schemas.events import CancelledEvent, TokenEvent
from tests.support.accounts import Account, create_account


@pytest.fixture
async def account(app: Quart, settings: Settings) -> Account:
    return await create_account(settings)


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "stream_lease_seconds": 0.3,
            "sse_heartbeat_seconds": 0.1,
            "stream_lease_wait_seconds": 0.0,
            # Below the live workers' 5 s, so their reapers leave this file's tasks alone.
            "task_heartbeat_ttl_seconds": 1,
        }
    )


@pytest.fixture
async def hub(redis: aioredis.Redis, fast: Settings) -> AsyncIterator[StreamHub]:
    check = partial(reap_if_dead, redis, fast)
    stream_hub = StreamHub(redis, fast.redis_prefix, block_ms=2000, worker_check=check)
    yield stream_hub
    await stream_hub.stop()


RunningTask = Callable[..., Awaitable[Task]]


@pytest.fixture
async def running_task(account: Account) -> AsyncIterator[RunningTask]:
    """Makes tasks a worker claimed `started_ago` seconds ago; ends those left running, so
    other tests' reapers don't find them."""
    made: list[str] = []

    async def make(*, started_ago: float = 0.0) -> Task:
        started = datetime.now(UTC) - timedelta(seconds=started_ago)
        task = await Task.create(
            user_id=account.id, model="m", state=TaskState.RUNNING, started_at=started
        )
        made.append(task.id)
        return task

    yield make
    await Task.filter(id__in=made, state=TaskState.RUNNING).update(state=TaskState.CANCELLED)


async def test_idle_reader_keeps_its_lease_and_heartbeats(
    account: Account,
    redis: aioredis.Redis,
    hub: StreamHub,
    fast: Settings,
    running_task: RunningTask,
) -> None:
    task = await running_task()
    user = await task.user
    reader = await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=fast)
    stream = TaskStream.for_task(redis, fast, task.id)
    heartbeats = 0
    started = time.monotonic()
    async with aclosing(reader.events()) as events:
        async for entry in events:
            if entry is None:
                heartbeats += 1
                if time.monotonic() - started > 1.0:
                    with pytest.raises(Conflict):
                        await open_task_reader(
                            user, task.id, None, redis=redis, hub=hub, settings=fast
                        )
                    await stream.append(CancelledEvent())
            else:
                assert entry.type == "cancelled"
    assert heartbeats >= 8
    assert await stream.is_consumed()
    assert not await redis.exists(stream.lease_key)
    with pytest.raises(Gone):
        await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=fast)


async def test_reader_that_lost_its_lease_stops_without_consuming(
    account: Account,
    redis: aioredis.Redis,
    hub: StreamHub,
    fast: Settings,
    running_task: RunningTask,
) -> None:
    task = await running_task()
    user = await task.user
    stream = TaskStream.for_task(redis, fast, task.id)
    await stream.append(TokenEvent(delta="a"))
    reader = await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=fast)
    received = []
    async with aclosing(reader.events()) as events:
        async for entry in events:
            received.append(entry)
            if len(received) == 1:
                await redis.set(stream.lease_key, "someone-else", px=5000)
            if len(received) > 50:
                break
    assert [e.type for e in received if e is not None] == ["token"]
    assert not await stream.is_consumed()
    assert await redis.get(stream.lease_key) == b"someone-else"


async def test_old_task_without_a_stream_is_gone(
    account: Account, redis: aioredis.Redis, hub: StreamHub, fast: Settings
) -> None:
    """A reconnect long after the stream expired must not wait for a generation."""
    task = await Task.create(user_id=account.id, model="m", state=TaskState.QUEUED)
    created = datetime.now(UTC) - timedelta(seconds=fast.stream_retention_seconds + 60)
    await Task.filter(id=task.id).update(created_at=created)
    user = await task.user
    with pytest.raises(Gone):
        await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=fast)
    await Task.filter(id=task.id).update(state=TaskState.FAILED)


async def test_fresh_queued_task_without_a_stream_waits_for_its_events(
    account: Account, redis: aioredis.Redis, hub: StreamHub, fast: Settings
) -> None:
    task = await Task.create(user_id=account.id, model="m", state=TaskState.QUEUED)
    user = await task.user
    reader = await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=fast)
    stream = TaskStream.for_task(redis, fast, task.id)

    async def first_event() -> str:
        async with aclosing(reader.events()) as events:
            async for entry in events:
                if entry is not None:
                    return entry.id
        raise AssertionError("stream ended without an event")

    waiting = asyncio.create_task(first_event())
    await asyncio.sleep(0.2)
    assert not waiting.done()
    appended = await stream.append(TokenEvent(delta="late"))
    assert await asyncio.wait_for(waiting, 2) == appended


async def test_silent_task_of_a_dead_worker_ends_with_an_error(
    account: Account,
    redis: aioredis.Redis,
    hub: StreamHub,
    fast: Settings,
    running_task: RunningTask,
) -> None:
    """No chat worker is left to reap it: the reader's heartbeat check does."""
    task = await running_task(started_ago=fast.task_heartbeat_ttl_seconds + 1)
    user = await task.user
    await TaskStream.for_task(redis, fast, task.id).append(TokenEvent(delta="partial"))
    reader = await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=fast)
    async with aclosing(reader.events()) as events:
        received = [entry async for entry in events if entry is not None]
    assert [e.type for e in received] == ["token", "error"]
    assert received[-1].payload()["code"] == "worker_lost"
    await task.refresh_from_db()
    assert task.state is TaskState.FAILED


async def test_reader_spares_a_task_whose_worker_heartbeats(
    account: Account,
    redis: aioredis.Redis,
    hub: StreamHub,
    fast: Settings,
    running_task: RunningTask,
) -> None:
    task = await running_task(started_ago=fast.task_heartbeat_ttl_seconds + 1)
    user = await task.user
    await redis.set(task_heartbeat_key(fast.redis_prefix, task.id), "1", ex=30)
    reader = await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=fast)
    heartbeats = 0
    async with aclosing(reader.events()) as events:
        async for entry in events:
            assert entry is None
            heartbeats += 1
            if heartbeats == 5:
                break
    await task.refresh_from_db()
    assert task.state is TaskState.RUNNING


async def test_a_failed_worker_check_does_not_end_the_delivery(
    account: Account,
    redis: aioredis.Redis,
    hub: StreamHub,
    fast: Settings,
    running_task: RunningTask,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def database_gone(*args: object) -> bool:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(hub, "worker_check", database_gone)
    task = await running_task()
    user = await task.user
    stream = TaskStream.for_task(redis, fast, task.id)
    reader = await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=fast)
    heartbeats = 0
    received = []
    async with aclosing(reader.events()) as events:
        async for entry in events:
            if entry is None:
                heartbeats += 1
                if heartbeats == 3:
                    await stream.append(CancelledEvent())
            else:
                received.append(entry.type)
    assert heartbeats >= 3
    assert received == ["cancelled"]


async def test_a_delivery_stuck_writing_is_cancelled_when_another_reader_resumes(
    account: Account,
    redis: aioredis.Redis,
    hub: StreamHub,
    fast: Settings,
    running_task: RunningTask,
) -> None:
    """The old delivery holds an entry it cannot write (a half-open connection whose
    buffers are full): the resuming reader's takeover cancels it and frees the hub."""
    slow_lease = fast.model_copy(update={"stream_lease_seconds": 30.0})
    task = await running_task()
    user = await task.user
    stream = TaskStream.for_task(redis, slow_lease, task.id)
    first = await stream.append(TokenEvent(delta="a"))
    old = await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=slow_lease)
    holding = asyncio.Event()

    async def stuck_writer() -> None:
        async with aclosing(old.events()) as events:
            async for entry in events:
                if entry is not None:
                    holding.set()
                    await asyncio.Event().wait()

    writer = asyncio.create_task(stuck_writer())
    await asyncio.wait_for(holding.wait(), 2)
    new = await open_task_reader(user, task.id, first, redis=redis, hub=hub, settings=slow_lease)
    await asyncio.wait([writer], timeout=2)
    assert writer.cancelled()
    assert old.superseded
    assert await redis.get(stream.lease_key) == new.lease.encode()
    assert hub.subscriber_count == 0
    await new.close()


async def test_a_reader_from_the_start_takes_the_stream_over(
    account: Account,
    redis: aioredis.Redis,
    hub: StreamHub,
    fast: Settings,
    running_task: RunningTask,
) -> None:
    """A client cut before its first `id:` has no entry id to resume from: `0-0` takes
    the stream over and replays it from the first entry; without any resume point it
    is still refused, told to send 0-0 rather than an id it cannot have."""
    slow_lease = fast.model_copy(update={"stream_lease_seconds": 30.0})
    task = await running_task()
    user = await task.user
    stream = TaskStream.for_task(redis, slow_lease, task.id)
    old = await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=slow_lease)
    first = await stream.append(TokenEvent(delta="a"))
    with pytest.raises(Conflict) as refused:
        await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=slow_lease)
    assert "0-0" in refused.value.message and "you sent no last event id" in refused.value.message
    new = await open_task_reader(user, task.id, "0-0", redis=redis, hub=hub, settings=slow_lease)
    assert await redis.get(stream.lease_key) == new.lease.encode()
    async with aclosing(new.events()) as events:
        entry = await anext(events)
        assert entry is not None and entry.id == first
    await old.close()
    assert not await redis.exists(stream.lease_key)
