"""A stream hub on a Redis client of its own, and whether its reader waits in its XREAD:
for tests that time what the hub does after a reply (linger, wake)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from backend.streams.hub import StreamHub


@contextlib.asynccontextmanager
async def own_hub(redis_url: str, prefix: str) -> AsyncIterator[StreamHub]:
    """A hub over `prefix`'s streams on a client of its own, whose connections share one
    client name, so `blocked_reads` can tell its reads apart."""
    client = aioredis.from_url(redis_url, client_name=f"{prefix}-hub-{uuid.uuid4().hex[:8]}")
    stream_hub = StreamHub(client, prefix, block_ms=5000)
    try:
        yield stream_hub
    finally:
        await stream_hub.stop()
        await client.aclose()


async def blocked_reads(redis: aioredis.Redis, hub: StreamHub) -> int:
    """The hub's connections blocked in a read right now (flag `b` in CLIENT LIST).

    Not "last command was XREAD": a reader lingering after a reply may take another
    pooled connection for its next XREAD, leaving an idle one that still shows `xread`.
    Counted by the hub's client name: other tests' workers and hubs share this Redis
    and block on reads of their own.
    """
    name = hub.redis.connection_pool.connection_kwargs["client_name"]
    clients = await redis.client_list()
    return sum(1 for c in clients if c.get("name") == name and "b" in c.get("flags", ""))


async def until_blocked(hub: StreamHub, redis: aioredis.Redis) -> None:
    """Until the hub's reader waits in its XREAD (flag `b`), not lingering after a reply."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if await blocked_reads(redis, hub):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the hub's reader never blocked")
