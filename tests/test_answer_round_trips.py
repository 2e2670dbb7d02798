"""Redis round trips an answer's ending spends (issue 16, third pass), against a real Redis.

A settle that commits at once keeps no heartbeat (it was a SET and a DEL per answer); a
slow one has it back within half a heartbeat interval and drops it when settled. The
reader's terminal delivery marks the stream consumed and gives up its lease in one
round trip, and never releases a lease another reader holds now.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from backend.constants import task_heartbeat_key
from backend.services.settle_retry import settle_through_outage
from backend.settings import Settings
from backend.streams.task_stream import TaskStream


class CountingRedis:
    """The real client, with the name of each command method called recorded."""

    def __init__(self, real: aioredis.Redis) -> None:
        self.real = real
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.real, name)
        if not callable(attribute):
            return attribute

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return recorded


def attempt_taking(seconds: float, seen: list[bool], check: Callable[[], Any]) -> Any:
    async def attempt() -> str:
        await asyncio.sleep(seconds)
        seen.append(bool(await check()))
        return "settled"

    return attempt


async def test_a_quick_settle_sends_nothing_to_redis(
    redis: aioredis.Redis, settings: Settings
) -> None:
    counting = CountingRedis(redis)
    task_id = uuid.uuid4().hex
    key = task_heartbeat_key(settings.redis_prefix, task_id)
    seen: list[bool] = []
    result = await settle_through_outage(
        attempt_taking(0, seen, lambda: redis.exists(key)),
        redis=counting,  # type: ignore[arg-type]
        settings=settings,
        task_id=task_id,
        retry_seconds=30,
    )
    assert result == "settled"
    assert counting.calls == []
    # Nor does a timer left behind set it later.
    await asyncio.sleep(settings.task_heartbeat_interval_seconds * 0.75)
    assert counting.calls == []
    assert not await redis.exists(key)


async def test_a_slow_settle_keeps_the_heartbeat_until_it_is_settled(
    redis: aioredis.Redis, settings: Settings
) -> None:
    task_id = uuid.uuid4().hex
    key = task_heartbeat_key(settings.redis_prefix, task_id)
    seen: list[bool] = []
    # Slower than half a heartbeat interval: the reaper's second sighting (two intervals
    # after the first) must find the heartbeat back.
    slow = settings.task_heartbeat_interval_seconds * 0.9
    result = await settle_through_outage(
        attempt_taking(slow, seen, lambda: redis.exists(key)),
        redis=redis,
        settings=settings,
        task_id=task_id,
        retry_seconds=30,
    )
    assert result == "settled"
    assert seen == [True]
    assert await redis.ttl(key) == -2  # dropped once settled


async def test_the_terminal_delivery_consumes_and_releases_in_one_round_trip(
    redis: aioredis.Redis,
) -> None:
    counting = CountingRedis(redis)
    stream = TaskStream(counting, "rt-test", uuid.uuid4().hex, retention_seconds=120)  # type: ignore[arg-type]
    token = await stream.acquire_lease(5)
    assert token
    counting.calls.clear()
    assert await stream.consume_and_release(token)
    assert counting.calls == ["eval"]
    assert await stream.is_consumed()
    assert 0 < await redis.ttl(stream.consumed_key) <= 120
    assert await stream.acquire_lease(5)  # released: the next reader may take it


async def test_consuming_never_releases_a_lease_another_reader_holds(
    redis: aioredis.Redis,
) -> None:
    stream = TaskStream(redis, "rt-test", uuid.uuid4().hex, retention_seconds=120)
    token, _ = await stream.seize_lease(5)
    assert not await stream.consume_and_release("an-expired-lease")
    assert await stream.refresh_lease(token, 5)  # still the other reader's
    assert await stream.is_consumed()
