"""TaskStream against a real Redis: append order, reads after an id, lease, consumption."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from backend.streams.hub import StreamHub
from backend.streams.task_stream import START, TaskStream, entry_id_key, is_entry_id
from schemas.events import DoneEvent, EventType, TokenEvent
from tests.support.stream_hubs import blocked_reads, own_hub


@pytest.fixture
def stream(redis: aioredis.Redis) -> TaskStream:
    return TaskStream(redis, "ts-test", uuid.uuid4().hex, retention_seconds=120, max_events=1000)


async def test_append_returns_increasing_ids_and_reads_in_order(stream: TaskStream) -> None:
    ids = [await stream.append(TokenEvent(delta=f"t{i}")) for i in range(5)]
    assert all(is_entry_id(i) for i in ids)
    assert sorted(ids, key=entry_id_key) == ids
    entries = await stream.read_after()
    assert [e.id for e in entries] == ids
    assert [e.payload()["delta"] for e in entries] == [f"t{i}" for i in range(5)]
    assert entries[0].event() == TokenEvent(delta="t0")


async def test_read_after_is_strictly_after(stream: TaskStream) -> None:
    ids = [await stream.append(TokenEvent(delta=str(i))) for i in range(4)]
    after = await stream.read_after(ids[1])
    assert [e.id for e in after] == ids[2:]
    assert await stream.read_after(ids[-1]) == []


async def test_blocking_read_wakes_on_append(stream: TaskStream) -> None:
    first = await stream.append(TokenEvent(delta="a"))
    reader = asyncio.create_task(stream.read_after(first, block_ms=5000))
    await asyncio.sleep(0.05)
    assert not reader.done()
    second = await stream.append(TokenEvent(delta="b"))
    entries = await asyncio.wait_for(reader, 2)
    assert [e.id for e in entries] == [second]


async def test_append_sets_retention_and_terminal_detection(
    stream: TaskStream, redis: aioredis.Redis
) -> None:
    await stream.append(TokenEvent(delta="x"))
    ttl = await redis.ttl(stream.key)
    assert 0 < ttl <= 120
    await stream.append(DoneEvent(message_id="m1", prompt_tokens=1, completion_tokens=2, cost=3))
    last = await stream.last_entry()
    assert last is not None and last.terminal and last.type is EventType.DONE
    assert last.payload() == {
        "message_id": "m1",
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "cost": 3,
        "reference": None,  # a plain chat's answer has no sources
        "finish_reason": "stop",
        "answer": None,  # the streamed tokens are the answer
    }


async def test_max_events_caps_the_stream(redis: aioredis.Redis) -> None:
    small = TaskStream(redis, "ts-test", uuid.uuid4().hex, max_events=10)
    for i in range(500):
        await small.append(TokenEvent(delta=str(i)))
    assert await redis.xlen(small.key) < 500


async def test_lease_is_exclusive_and_released_only_by_its_holder(stream: TaskStream) -> None:
    token = await stream.acquire_lease(5)
    assert token
    assert await stream.acquire_lease(5) is None
    assert not await stream.release_lease("not-the-token")
    assert await stream.refresh_lease(token, 5)
    assert await stream.release_lease(token)
    assert not await stream.refresh_lease(token, 5)
    assert await stream.acquire_lease(5)


async def test_lease_expires(stream: TaskStream) -> None:
    assert await stream.acquire_lease(0.1)
    await asyncio.sleep(0.2)
    assert await stream.acquire_lease(5)


async def test_consumed_flag(stream: TaskStream) -> None:
    assert not await stream.is_consumed()
    await stream.mark_consumed()
    assert await stream.is_consumed()


def resident_bytes() -> int:
    """This process's resident set size, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


@pytest.fixture
async def hub(redis_url: str) -> AsyncIterator[StreamHub]:
    async with own_hub(redis_url, "ts-test") as stream_hub:
        yield stream_hub


async def test_hub_catches_up_then_follows(hub: StreamHub, stream: TaskStream) -> None:
    ids = [await stream.append(TokenEvent(delta=str(i))) for i in range(3)]
    subscription = await hub.subscribe(stream.key, ids[0])
    ids.append(await stream.append(TokenEvent(delta="3")))
    received = [await subscription.get(2) for _ in range(3)]
    assert [e.id for e in received if e] == ids[1:]
    assert await subscription.get(0.05) is None
    hub.unsubscribe(subscription)
    assert stream.key not in hub.owners and hub.subscriber_count == 0


async def test_hub_loses_and_repeats_nothing_while_subscribing_during_appends(
    hub: StreamHub, redis: aioredis.Redis
) -> None:
    for _ in range(20):
        stream = TaskStream(redis, "ts-test", uuid.uuid4().hex)
        # A second subscriber keeps the key in the hub's read, as with another process reader.
        early = await hub.subscribe(stream.key, START)

        async def produce(target: TaskStream = stream) -> list[str]:
            ids = []
            for i in range(30):
                ids.append(await target.append(TokenEvent(delta=str(i))))
                if i % 5 == 0:
                    await asyncio.sleep(0)
            return ids

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.001)
        late = await hub.subscribe(stream.key, START)
        ids = await producer
        for subscription in (early, late):
            received = [await subscription.get(1) for _ in ids]
            assert [e.id for e in received if e] == ids
            assert await subscription.get(0.01) is None
            hub.unsubscribe(subscription)


async def test_hub_latency_from_append_to_subscriber(hub: StreamHub, stream: TaskStream) -> None:
    subscription = await hub.subscribe(stream.key, START)
    await asyncio.sleep(0.05)
    latencies = []
    for i in range(50):
        started = time.perf_counter()
        await stream.append(TokenEvent(delta=str(i)))
        assert await subscription.get(1) is not None
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.005, latencies


async def test_hub_serves_thousands_of_idle_subscribers_on_few_reads(
    hub: StreamHub, redis: aioredis.Redis
) -> None:
    count = 5000
    before = resident_bytes()
    keys = [f"ts-test:idle:{uuid.uuid4().hex}" for _ in range(count)]
    subscriptions = []
    for batch in range(0, count, 500):
        subscriptions += await asyncio.gather(
            *(hub.subscribe(key, START) for key in keys[batch : batch + 500])
        )
    waiters = [asyncio.create_task(s.get(30)) for s in subscriptions]
    await asyncio.sleep(0.2)
    per_subscriber = (resident_bytes() - before) / count
    # A few KB each (queue, waiter task); a connection per subscriber would cost far more.
    assert per_subscriber < 16 * 1024, per_subscriber
    assert len(hub.readers) == -(-count // hub.keys_per_reader)
    assert 0 < await blocked_reads(redis, hub) <= len(hub.readers)
    target = TaskStream(redis, "ts-test", "unused")
    target.key = keys[count // 2]
    started = time.perf_counter()
    await target.append(TokenEvent(delta="wake"))
    entry = await asyncio.wait_for(waiters[count // 2], 2)
    assert entry is not None and time.perf_counter() - started < 0.5
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    for subscription in subscriptions:
        hub.unsubscribe(subscription)
    await redis.delete(keys[count // 2])
    assert hub.subscriber_count == 0
