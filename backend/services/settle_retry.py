"""Settling a task through a database outage, with the task's heartbeat kept alive.

A worker that has produced a whole answer must not lose it because PostgreSQL restarts
(or SQLite is locked past its busy timeout) at the moment it stores it. Before, the
transaction failed, the job ended, the heartbeat expired and the reaper failed the task
as `worker_lost` once the database was back: the client had shown the whole answer and
nothing was stored or billed. Here the settling transaction is retried with capped
back-off (logged once per outage) for up to TASK_SETTLE_RETRY_SECONDS, and on each
failed attempt the task's heartbeat is pushed out, so the reaper, which goes by the
heartbeat, does not race the worker when the database comes back.

A commit whose reply was lost may have been applied: the retried conditional UPDATE then
finds the task settled and reports that another ender won; readers rebuild the ending
from SQL (`streams.endings`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TypeVar

from redis.asyncio import Redis

from backend.constants import task_heartbeat_key
from backend.outage import MAX_DELAY_SECONDS, through_database_outage
from backend.settings import Settings

log = logging.getLogger("sluice.tasks.settle")

T = TypeVar("T")
IN_FLIGHT: set[asyncio.Task[None]] = set()


async def keep_heartbeat(redis: Redis, settings: Settings, task_id: str) -> None:
    """Push the heartbeat past the next back-off; Redis may be down too (then the
    reaper cannot see the task dead either)."""
    ttl = settings.task_heartbeat_ttl_seconds + int(MAX_DELAY_SECONDS) + 1
    with suppress(Exception):
        await redis.set(task_heartbeat_key(settings.redis_prefix, task_id), "1", ex=ttl)


async def drop_heartbeat(redis: Redis, settings: Settings, task_id: str) -> None:
    """Remove the heartbeat kept while settling; a Redis that is down lets it expire."""
    with suppress(Exception):
        await redis.delete(task_heartbeat_key(settings.redis_prefix, task_id))


async def settle_through_outage(
    attempt: Callable[[], Awaitable[T]],
    *,
    redis: Redis,
    settings: Settings,
    task_id: str,
    retry_seconds: float,
) -> T:
    """`attempt()` (one transaction), retried while the database is unreachable, for up
    to `retry_seconds` (0: once)."""
    keeper = SlowAttemptKeeper(redis, settings, task_id) if retry_seconds > 0 else None

    async def keep() -> None:
        if keeper is not None:
            await keeper.keep_now()
        else:
            await keep_heartbeat(redis, settings, task_id)

    try:
        result = await through_database_outage(
            attempt, step="settling a task", log=log, retry_seconds=retry_seconds, on_failure=keep
        )
        if keeper is not None:
            # Settled: a heartbeat kept for the attempts is no longer anyone's signal.
            await keeper.finish()
        return result
    finally:
        if keeper is not None:
            keeper.stop()


class SlowAttemptKeeper:
    """The heartbeat kept for a settle, only once it is slow or failing.

    The watch dropped the heartbeat when generation ended, and the reaper fails a task
    only after finding it missing twice, CONFIRM_INTERVALS heartbeat intervals apart. So
    a first attempt that waits out the busy timeout (or the pool's own retries) must have
    the heartbeat back within one interval, but one that commits in milliseconds, as
    nearly all do, needs none: setting and dropping it then were two Redis round trips
    per answer for nothing. A timer sets it after half an interval; a settle that ends
    sooner cancels the timer and touches Redis not at all.
    """

    def __init__(self, redis: Redis, settings: Settings, task_id: str) -> None:
        self.redis, self.settings, self.task_id = redis, settings, task_id
        self.kept: asyncio.Task[None] | None = None
        delay = settings.task_heartbeat_interval_seconds / 2
        self.timer = asyncio.get_running_loop().call_later(delay, self.start_keeping)

    def start_keeping(self) -> None:
        if self.kept is None:
            self.kept = asyncio.create_task(keep_heartbeat(self.redis, self.settings, self.task_id))

    async def keep_now(self) -> None:
        self.timer.cancel()
        if self.kept is not None:
            await self.kept
        self.kept = asyncio.create_task(keep_heartbeat(self.redis, self.settings, self.task_id))
        await self.kept

    async def finish(self) -> None:
        """Drop the heartbeat if it was kept (after its SET landed, or the drop could
        run first and leave it behind)."""
        self.timer.cancel()
        if self.kept is not None:
            await self.kept
            await drop_heartbeat(self.redis, self.settings, self.task_id)

    def stop(self) -> None:
        self.timer.cancel()
        if self.kept is not None and not self.kept.done():
            # The settle raised with a SET in flight: it finishes on its own (the loop
            # keeps only weak references to tasks).
            IN_FLIGHT.add(self.kept)
            self.kept.add_done_callback(IN_FLIGHT.discard)
