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

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TypeVar

from redis.asyncio import Redis

from backend.constants import task_heartbeat_key
from backend.dependency_failures import Dependency, dependency_failure
from backend.outage import MAX_DELAY_SECONDS, Outage
from backend.settings import Settings

log = logging.getLogger("sluice.tasks.settle")

T = TypeVar("T")


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
    outage = Outage("The database (settling a task)", log)
    deadline = time.monotonic() + retry_seconds
    if retry_seconds > 0:
        # The watch dropped the heartbeat when generation ended; a first attempt that
        # waits out the busy timeout (and the pool's own retries) must not look dead.
        await keep_heartbeat(redis, settings, task_id)
    while True:
        try:
            result = await attempt()
        except Exception as error:
            failure = dependency_failure(error)
            if (
                failure is None
                or failure.dependency is not Dependency.DATABASE
                or time.monotonic() >= deadline
            ):
                raise
            await keep_heartbeat(redis, settings, task_id)
            await outage.failed(error)
            continue
        outage.recovered()
        if retry_seconds > 0:
            # Settled: the heartbeat kept for the attempts is no longer anyone's signal.
            await drop_heartbeat(redis, settings, task_id)
        return result
