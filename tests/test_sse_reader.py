"""The shared delivery rules (`open_task_reader`, `TaskReader.events`) in-process, with
short lease and heartbeat times: refresh while idle, stop when the lease is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from quart import Quart

from backend.errors import Conflict, Gone
from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from backend.streams.delivery import open_task_reader
from backend.streams.hub import StreamHub
from backend.streams.task_stream import TaskStream
from schemas.events import CancelledEvent, TokenEvent
from tests.support.accounts import Account
from tests.support.live_server import create_account


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
        }
    )


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def hub(redis: aioredis.Redis, fast: Settings) -> AsyncIterator[StreamHub]:
    stream_hub = StreamHub(redis, fast.redis_prefix, block_ms=2000)
    yield stream_hub
    await stream_hub.stop()


async def test_idle_reader_keeps_its_lease_and_heartbeats(
    account: Account, redis: aioredis.Redis, hub: StreamHub, fast: Settings
) -> None:
    task = await Task.create(user_id=account.id, model="m", state=TaskState.RUNNING)
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
    account: Account, redis: aioredis.Redis, hub: StreamHub, fast: Settings
) -> None:
    task = await Task.create(user_id=account.id, model="m", state=TaskState.RUNNING)
    user = await task.user
    stream = TaskStream.for_task(redis, fast, task.id)
    await stream.append(TokenEvent(delta="a"))
    reader = await open_task_reader(user, task.id, None, redis=redis, hub=hub, settings=fast)
    await redis.set(stream.lease_key, "someone-else", px=5000)
    received = []
    async with aclosing(reader.events()) as events:
        async for entry in events:
            received.append(entry)
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
