"""The stream hub's load-adaptive linger: its rule, and a reader lingering longer after a
reply of many streams than after a reply of one (the busy linger stretched to 1 s, so
the difference shows whatever the machine's load)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from backend.streams import linger as linger_module
from backend.streams.hub import LINGER_SECONDS, StreamHub
from backend.streams.linger import BUSY_STREAMS, IDLE_STREAMS, linger_after
from backend.streams.task_stream import START, TaskStream
from schemas.events import TokenEvent
from tests.support.stream_hubs import own_hub

STRETCHED_SECONDS = 1.0


def test_the_linger_stays_idle_for_a_few_streams_and_grows_to_the_busy_one() -> None:
    assert [linger_after(n, 0.003) for n in (0, 1, IDLE_STREAMS)] == [0.003] * 3
    middle = (IDLE_STREAMS + BUSY_STREAMS) // 2
    assert 0.003 < linger_after(middle, 0.003) < linger_module.BUSY_LINGER_SECONDS
    assert linger_after(BUSY_STREAMS, 0.003) == linger_module.BUSY_LINGER_SECONDS
    assert linger_after(10_000, 0.003) == linger_module.BUSY_LINGER_SECONDS
    lingers = [linger_after(n, 0.003) for n in range(200)]
    assert lingers == sorted(lingers)
    assert linger_after(10_000, 0.3) == 0.3, "a longer idle linger is never shortened"


@pytest.fixture
async def hub(redis_url: str) -> AsyncIterator[StreamHub]:
    async with own_hub(redis_url, "linger-test") as stream_hub:
        yield stream_hub


async def next_entry_wait(
    hub: StreamHub, redis: aioredis.Redis, busy_streams: int
) -> tuple[bool, bool]:
    """Append one entry to each of `busy_streams` streams at once, wait until all are
    delivered, append one more to the first: (delivered within a quarter of the
    stretched linger, delivered at all)."""
    streams = [TaskStream(redis, "linger-test", uuid.uuid4().hex) for _ in range(busy_streams)]
    subscriptions = [await hub.subscribe(s.key, START) for s in streams]
    async with redis.pipeline(transaction=True) as pipe:  # one reply carries them all
        for stream in streams:
            pipe.xadd(stream.key, {"type": "token", "data": '{"delta": "0"}'})
        await pipe.execute()
    for subscription in subscriptions:
        assert await subscription.get(5) is not None
    await streams[0].append(TokenEvent(delta="1"))
    soon = await subscriptions[0].get(STRETCHED_SECONDS / 4)
    later = soon or await subscriptions[0].get(5)
    return soon is not None, later is not None


async def test_a_reply_of_many_streams_lingers_longer_than_one_of_a_few(
    hub: StreamHub, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(linger_module, "BUSY_LINGER_SECONDS", STRETCHED_SECONDS)
    assert LINGER_SECONDS < STRETCHED_SECONDS / 4
    assert await next_entry_wait(hub, redis, 1) == (True, True), "a light reply: 3 ms"
    assert await next_entry_wait(hub, redis, BUSY_STREAMS + 6) == (False, True), (
        "a reply of many streams: the busy linger"
    )
