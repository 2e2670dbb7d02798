"""EventWriter against a real Redis: batched appends keep every stream's order and ids."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from backend.streams.event_writer import EventWriter
from tests.support.live_server import free_port


@pytest.fixture
def prefix() -> str:
    return f"ew-test:{uuid.uuid4().hex}"


async def test_concurrent_appends_share_round_trips_and_keep_each_streams_order(
    redis: aioredis.Redis, prefix: str
) -> None:
    writer = EventWriter(redis)
    streams, events = 50, 20

    async def producer(index: int) -> list[bytes]:
        key = f"{prefix}:{index}"
        ids = []
        for n in range(events):
            fields = {"type": "token", "data": f'{{"delta": "{index}-{n}"}}'}
            ids.append(await writer.append(key, fields, max_events=1000))
        return ids

    returned = await asyncio.gather(*(producer(i) for i in range(streams)))

    for index, ids in enumerate(returned):
        rows = await redis.xrange(f"{prefix}:{index}")
        assert [entry_id for entry_id, _ in rows] == ids
        deltas = [fields[b"data"].decode() for _, fields in rows]
        assert deltas == [f'{{"delta": "{index}-{n}"}}' for n in range(events)]
    # 1,000 appends; with 50 writers in step, a round trip carries about 50 of them.
    assert writer.round_trips <= streams * events // 10


async def test_a_lone_append_is_written_at_once_with_its_expiry(
    redis: aioredis.Redis, prefix: str
) -> None:
    writer = EventWriter(redis)
    entry_id = await writer.append(
        f"{prefix}:a", {"type": "done", "data": "{}"}, max_events=10, expire_seconds=300
    )
    assert writer.round_trips == 1
    assert await redis.xrange(f"{prefix}:a") == [(entry_id, {b"type": b"done", b"data": b"{}"})]
    assert 290 < await redis.ttl(f"{prefix}:a") <= 300
    await writer.append(f"{prefix}:b", {"type": "token", "data": "{}"}, max_events=10)
    assert await redis.ttl(f"{prefix}:b") == -1  # no expiry asked: none set


async def test_one_failing_append_fails_alone(redis: aioredis.Redis, prefix: str) -> None:
    writer = EventWriter(redis)
    await redis.set(f"{prefix}:not-a-stream", "x")

    async def append(key: str) -> bytes:
        return await writer.append(
            f"{prefix}:{key}", {"type": "token", "data": "{}"}, max_events=10, expire_seconds=60
        )

    outcomes = await asyncio.gather(
        append("good-1"), append("not-a-stream"), append("good-2"), return_exceptions=True
    )

    assert isinstance(outcomes[1], ResponseError)
    assert writer.round_trips == 1
    for key, outcome in (("good-1", outcomes[0]), ("good-2", outcomes[2])):
        assert [entry_id for entry_id, _ in await redis.xrange(f"{prefix}:{key}")] == [outcome]
    assert await redis.get(f"{prefix}:not-a-stream") == b"x"


async def test_an_unreachable_redis_fails_every_waiting_append(prefix: str) -> None:
    client = aioredis.Redis(port=free_port(), socket_connect_timeout=1)  # nothing listens
    writer = EventWriter(client)
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(
                writer.append(f"{prefix}:{i}", {"type": "token", "data": "{}"}, max_events=10)
                for i in range(5)
            ),
            return_exceptions=True,
        ),
        timeout=10,
    )
    await client.aclose()
    assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes)
    assert writer.flushing is None


async def test_a_cancelled_caller_leaves_the_others_and_the_writer_working(
    redis: aioredis.Redis, prefix: str
) -> None:
    writer = EventWriter(redis)
    fields = {"type": "token", "data": "{}"}
    cancelled = asyncio.create_task(writer.append(f"{prefix}:x", fields, max_events=10))
    kept = asyncio.create_task(writer.append(f"{prefix}:y", fields, max_events=10))
    await asyncio.sleep(0)
    cancelled.cancel()

    assert await kept
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await writer.aclose()
    assert await writer.append(f"{prefix}:y", fields, max_events=10)
    assert await redis.xlen(f"{prefix}:y") == 2
