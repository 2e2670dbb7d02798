"""The chat worker's event writer: many tasks' tokens per round trip, each task in order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import DoneEvent, TokenEvent
from workers.jobs.event_writer import EventWriter

pytestmark = pytest.mark.sqlite_only


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


def streams_of(redis: aioredis.Redis, settings: Settings, count: int) -> list[TaskStream]:
    return [TaskStream.for_task(redis, settings, uuid.uuid4().hex) for _ in range(count)]


async def test_concurrent_tasks_keep_their_order_and_share_round_trips(
    redis: aioredis.Redis, settings: Settings
) -> None:
    writer = EventWriter(redis)
    streams = streams_of(redis, settings, 50)
    tokens = [f"t{i}" for i in range(20)]
    round_trips = 0
    original = redis.pipeline

    def counting_pipeline(*args, **kwargs):
        nonlocal round_trips
        round_trips += 1
        return original(*args, **kwargs)

    redis.pipeline = counting_pipeline  # type: ignore[method-assign]

    async def generate(stream: TaskStream) -> None:
        for token in tokens:
            await writer.append(stream, TokenEvent(delta=token))

    await asyncio.gather(*(generate(stream) for stream in streams))
    redis.pipeline = original  # type: ignore[method-assign]
    # 1,000 events: about one round trip per token position, not one per event.
    assert round_trips <= 3 * len(tokens)
    for stream in streams:
        entries = await stream.read_after()
        assert [entry.payload()["delta"] for entry in entries] == tokens
        assert 0 < await redis.ttl(stream.key) <= settings.stream_retention_seconds
    await redis.delete(*(stream.key for stream in streams))
    await writer.close()


async def test_a_failed_write_fails_only_that_batch(
    redis: aioredis.Redis, settings: Settings
) -> None:
    writer = EventWriter(redis)
    [stream] = streams_of(redis, settings, 1)
    await redis.set(stream.key, "not a stream")
    with pytest.raises(aioredis.ResponseError):
        await writer.append(stream, TokenEvent(delta="lost"))
    await redis.delete(stream.key)
    await writer.append(stream, TokenEvent(delta="kept"))
    await stream.append(DoneEvent(message_id=None, prompt_tokens=1, completion_tokens=1, cost=0))
    assert [entry.type for entry in await stream.read_after()] == ["token", "done"]
    await redis.delete(stream.key)
    await writer.close()
