"""What keeps an ingest job honest while it works on a document's run.

- A **lease** in Redis (`ingest_lease_key`), taken before the job starts the run and
  refreshed every third of INGEST_LEASE_SECONDS: a second delivery of the same job finds
  it held and does nothing, and when a worker dies (kill -9, OOM) the lease expires and
  the sweeper (`ingest_recovery.py`) re-queues the document.
- A **liveness check** every INGEST_CANCEL_POLL_SECONDS: the run must still be the
  document's live one (`document_runs.current`). A cancel, a delete or a re-queue makes
  it stale, and the watch cancels the job's work at once, even mid-parse or mid-batch,
  instead of at its next write.

Outages: the lease is refreshed whether or not SQL answers (a PostgreSQL restart must not
let the lease lapse under a live job), and a lease that lapsed while Redis was away
(paused or restarted past INGEST_LEASE_SECONDS) is taken back by the job still holding
the run, unless another job took it meanwhile. The sweeper waits one sweep before it
calls a lease-less run dead (`ingest_recovery.py`), time for the job to take it back, so
an outage spends none of the document's restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis

from backend.constants import ingest_lease_key, ingest_orphan_key
from backend.dependency_failures import dependency_failure
from backend.knowledge import document_runs
from backend.settings import Settings

log = logging.getLogger("sluice.ingest")

T = TypeVar("T")

REFRESH_LEASE = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not held then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('DEL', KEYS[2])
  return 2
end
return 0
"""
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RunStopped(Exception):
    """The run is no longer the document's live one: cancelled, deleted or re-queued."""


class RunWatch:
    def __init__(self, redis: Redis, settings: Settings, document_id: str, run_id: str) -> None:
        self.redis = redis
        self.document_id = document_id
        self.run_id = run_id
        self.key = ingest_lease_key(settings.redis_prefix, document_id)
        self.orphan_key = ingest_orphan_key(settings.redis_prefix, document_id)
        self.token = f"{run_id}:{secrets.token_hex(8)}"
        self.lease_ms = int(settings.ingest_lease_seconds * 1000)
        self.poll_seconds = settings.ingest_cancel_poll_seconds
        self.stale = False
        self.work: asyncio.Task | None = None
        self.loop_task: asyncio.Task[None] | None = None
        # Called on every poll (the ingestion flushes throttled progress through it).
        self.on_poll: Callable[[], Awaitable[None]] | None = None
        # Polls fail for as long as an outage lasts: logged when it starts and ends.
        self.failing = False

    async def acquire(self) -> bool:
        """Take the document's lease; False when another job holds it. Tried again after
        an outage, an attempt whose reply was lost may have taken it: ours is ours."""
        if await self.redis.set(self.key, self.token, nx=True, px=self.lease_ms):
            return True
        held = await self.redis.get(self.key)
        if isinstance(held, bytes):
            held = held.decode()
        return held == self.token

    async def release(self) -> None:
        """Give the lease up; if Redis is unavailable it expires by itself."""
        try:
            await asyncio.shield(self.redis.eval(RELEASE_LEASE, 1, self.key, self.token))
        except Exception as error:
            if dependency_failure(error) is None:
                raise
            log.warning("could not release the lease on document %s: %s", self.document_id, error)

    async def __aenter__(self) -> RunWatch:
        self.loop_task = asyncio.create_task(self.loop(), name=f"run-watch-{self.document_id}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.loop_task is not None:
            self.loop_task.cancel()
            await asyncio.gather(self.loop_task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.release()

    async def guard(self, work: Awaitable[T]) -> T:
        """Run `work`; RunStopped as soon as the run goes stale, whatever it was doing."""
        if self.stale:
            raise RunStopped
        self.work = asyncio.ensure_future(work)
        try:
            return await self.work
        except asyncio.CancelledError:
            if self.stale and not self.cancelling():
                raise RunStopped from None
            raise
        finally:
            if not self.work.done():
                self.work.cancel()
                await asyncio.gather(self.work, return_exceptions=True)
            self.work = None

    @staticmethod
    def cancelling() -> bool:
        """Whether this task itself is being cancelled (a worker shutting down)."""
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

    def stop(self) -> None:
        """The run went stale: stop the guarded work."""
        self.stale = True
        if self.work is not None and not self.work.done():
            self.work.cancel()

    async def refresh(self) -> bool:
        """Refresh the lease (or take it back if it lapsed); False if another job has it."""
        refreshed = await self.redis.eval(
            REFRESH_LEASE, 2, self.key, self.orphan_key, self.token, self.lease_ms
        )
        if refreshed == 2:
            log.warning("took the lapsed lease on document %s back", self.document_id)
        return bool(refreshed)

    async def loop(self) -> None:
        next_refresh = time.monotonic() + self.lease_ms / 3000
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                # Before the SQL check, which may fail for as long as the database is down.
                if time.monotonic() >= next_refresh:
                    if not await self.refresh():
                        log.warning("lost the lease on document %s", self.document_id)
                        self.stop()
                        return
                    next_refresh = time.monotonic() + self.lease_ms / 3000
                if not await document_runs.current(self.document_id, self.run_id).exists():
                    self.stop()
                    return
                if self.on_poll is not None:
                    await self.on_poll()
                if self.failing:
                    self.failing = False
                    log.warning("watching document %s works again", self.document_id)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # A database or Redis outage: try again at the next poll (the lease is
                # taken back if it lapsed meanwhile).
                if not self.failing:
                    self.failing = True
                    log.warning(
                        "watching document %s failed (%s: %s); retrying every poll",
                        self.document_id,
                        type(error).__name__,
                        error,
                    )
