"""The worker's EventWriter on a connection of its own (`DirectPipeline`), against a real
Redis: batches keep each stream's order, a bad command fails alone, a connection Redis
closed is opened again without writing anything twice, a Redis that stops answering
fails the round trip after the socket timeout, and closing gives the connection back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.streams.direct_pipeline import DirectPipeline
from backend.streams.event_writer import EventWriter

TOKEN = {"type": "token", "data": '{"delta": "x"}'}


@pytest.fixture
def prefix() -> str:
    return f"dp-test:{uuid.uuid4().hex}"


async def test_batches_on_one_held_connection_keep_each_streams_order(
    redis: aioredis.Redis, prefix: str
) -> None:
    writer = EventWriter(redis, own_connection=True)
    streams, events = 20, 10

    async def producer(index: int) -> list[bytes]:
        fields = [{"type": "token", "data": f"{index}-{n}"} for n in range(events)]
        return [await writer.append(f"{prefix}:{index}", f, max_events=100) for f in fields]

    returned = await asyncio.gather(*(producer(i) for i in range(streams)))

    for index, ids in enumerate(returned):
        rows = await redis.xrange(f"{prefix}:{index}")
        assert [entry_id for entry_id, _ in rows] == ids
        assert [f[b"data"].decode() for _, f in rows] == [f"{index}-{n}" for n in range(events)]
    assert writer.round_trips <= streams * events // 5
    assert writer.direct is not None
    held = writer.direct.connection
    assert held is not None and held in redis.connection_pool._in_use_connections
    await writer.aclose()
    assert held not in redis.connection_pool._in_use_connections  # given back


async def test_a_bad_command_fails_alone_and_expiries_are_set(
    redis: aioredis.Redis, prefix: str
) -> None:
    writer = EventWriter(redis, own_connection=True)
    await redis.set(f"{prefix}:not-a-stream", "x")
    outcomes = await asyncio.gather(
        *(
            writer.append(f"{prefix}:{key}", TOKEN, max_events=10, expire_seconds=60)
            for key in ("good-1", "not-a-stream", "good-2")
        ),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], ResponseError)
    for key, outcome in (("good-1", outcomes[0]), ("good-2", outcomes[2])):
        assert [entry_id for entry_id, _ in await redis.xrange(f"{prefix}:{key}")] == [outcome]
        assert 50 < await redis.ttl(f"{prefix}:{key}") <= 60
    await writer.aclose()


async def test_a_connection_redis_closed_is_opened_again_and_nothing_is_written_twice(
    redis: aioredis.Redis, prefix: str
) -> None:
    writer = EventWriter(redis, outage_tolerance_seconds=5)  # the worker's: its own connection
    assert writer.direct is not None
    first = await writer.append(f"{prefix}:s", TOKEN, max_events=100)
    (client_id,) = await writer.direct.execute([("CLIENT", "ID")])
    assert await redis.client_kill_filter(_id=client_id) == 1

    second = await writer.append(f"{prefix}:s", TOKEN, max_events=100, after=first.decode())

    assert [entry_id for entry_id, _ in await redis.xrange(f"{prefix}:s")] == [first, second]
    (again,) = await writer.direct.execute([("CLIENT", "ID")])
    assert again != client_id
    await writer.aclose()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never answers (a paused Redis, a half-open link)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    for writer in held:
        writer.close()


async def test_a_redis_that_stops_answering_times_out_once_per_round_trip(
    silent_server: int,
) -> None:
    client = aioredis.Redis(port=silent_server, socket_timeout=0.3, lib_name=None, lib_version=None)
    pipeline = DirectPipeline(client)
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError):
        await pipeline.execute([("XADD", "k", "*", "a", "1")] * 50)
    assert time.monotonic() - started < 1.0  # after the socket timeout, not hanging
    assert pipeline.connection is not None and not pipeline.connection.is_connected
    await pipeline.aclose()
    await client.aclose()
