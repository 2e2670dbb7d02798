"""Crash recovery for parsing: no document stays RUNNING because its worker died.

Each ingest worker sweeps at start-up and every INGEST_SWEEP_INTERVAL_SECONDS (one
sweeper at a time, by a short Redis lock):

- A document that a job started (`process_begin_at` set) whose lease has expired lost
  its worker (kill -9, OOM, a lost host): it is queued again as a new run, whose job
  starts from scratch (the dead run left no chunks: they are written only at its end,
  and stable ids make a late write harmless). After INGEST_MAX_RESTARTS such restarts it
  ends FAIL instead, since the document itself may be what kills the worker.
- A document queued for longer than INGEST_QUEUED_TIMEOUT_SECONDS whose job is not in
  Redis (an enqueue lost with Redis, a flushed queue) gets its job enqueued again.

A started run is called dead on the first sweep that finds it without its lease at least
a third of a lease after an earlier sweep found it so (`ingest_orphan_key`): a job that outlived
a Redis outage, its lease lapsed meanwhile, takes the lease back within a poll of Redis
answering, and keeps its run (no restart spent on a worker that was alive).

A worker stopped gracefully (SIGTERM) hands its documents back itself, as new runs that
spend no restart (`ingest_drain.py`); only one that could not (Redis or SQL away at that
moment) is left to the sweep. Every transition is conditional on
the run id the sweep saw, so concurrent sweeps, and a job that was only slow, agree.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from backend.constants import ingest_lease_key, ingest_orphan_key, ingest_restarts_key
from backend.knowledge import document_runs
from backend.knowledge.parse_queue import announce_and_enqueue, parse_job_id
from backend.knowledge.status_feed import publish_documents
from backend.models import Document
from backend.models.ids import new_id
from backend.models.knowledge import DocumentRun
from backend.settings import Settings

log = logging.getLogger("sluice.ingest.recovery")

RESTARTS_TTL_SECONDS = 24 * 3600
SLIM = ("id", "run_id", "owner_id", "progress_msg", "process_begin_at", "updated_at")


def restart_line(restart: int, limit: int) -> str:
    return (
        "The worker parsing this document stopped unexpectedly; parsing it again "
        f"(restart {restart} of {limit})."
    )


def given_up_line(deaths: int) -> str:
    times = {1: "once", 2: "twice"}.get(deaths, f"{deaths} times")
    return (
        f"The worker parsing this document stopped unexpectedly {times}: the file may be "
        "too large or damaged for this server. Try again, or split it"
    )


async def restart(redis: ArqRedis, settings: Settings, document: Document) -> bool:
    """Queue a dead run again as a new run, or fail it after too many restarts."""
    restarts = ingest_restarts_key(settings.redis_prefix, document.id)
    count = await redis.incr(restarts)
    await redis.expire(restarts, RESTARTS_TTL_SECONDS)
    if count > settings.ingest_max_restarts:
        failed = await document_runs.finish(
            document.id, document.run_id, DocumentRun.FAIL, given_up_line(count)
        )
        if failed:
            log.warning("document %s failed: its worker died %d times", document.id, count)
            await publish_documents(redis, settings, await Document.filter(id=document.id))
        return failed
    run_id = new_id()
    moment = document_runs.now()
    line = document_runs.log_line(restart_line(count, settings.ingest_max_restarts), moment)
    updated = await document_runs.current(document.id, document.run_id).update(
        run_id=run_id,
        progress=0.0,
        progress_msg=document_runs.append(document.progress_msg, line),
        process_begin_at=None,
        updated_at=moment,
    )
    if updated:
        log.warning("re-queued document %s after its worker died", document.id)
        await announce_and_enqueue(redis, settings, {document.id: run_id})
    return bool(updated)


async def long_orphaned(redis: ArqRedis, settings: Settings, document: Document) -> bool:
    """Whether an earlier sweep, a third of a lease ago or more, found this run without its
    lease too; the first sighting only marks it."""
    key = ingest_orphan_key(settings.redis_prefix, document.id)
    grace = settings.ingest_lease_seconds / 3
    mark = f"{document.run_id}:{time.time()}"
    expiry = max(1, int(grace * 4))
    if await redis.set(key, mark, nx=True, ex=expiry):
        return False
    seen = (await redis.get(key) or b"").decode()
    run_id, _, since = seen.rpartition(":")
    if run_id != document.run_id:
        await redis.set(key, mark, ex=expiry)
        return False
    return time.time() - float(since or 0) >= grace


async def lease_held(redis: ArqRedis, settings: Settings, documents: list[Document]) -> list[bool]:
    async with redis.pipeline(transaction=False) as pipe:
        for document in documents:
            pipe.exists(ingest_lease_key(settings.redis_prefix, document.id))
        return [bool(found) for found in await pipe.execute()]


def sweep_lock(redis: ArqRedis, settings: Settings) -> Lock:
    """The one-sweeper-at-a-time lock. It lapses after two sweep intervals: a worker killed
    mid-sweep (an OOM kill, kill -9) held the former 60 s lock to its end, and no document
    was recovered meanwhile. A sweep longer than that overlaps the next one, which is
    harmless: every transition is conditional on the run id the sweep saw."""
    return redis.lock(
        f"{settings.redis_prefix}:ingest:sweep-lock",
        timeout=2 * settings.ingest_sweep_interval_seconds,
    )


async def sweep_documents(redis: ArqRedis, settings: Settings) -> int:
    """One sweep (if no other worker is sweeping); how many documents it acted on."""
    lock = sweep_lock(redis, settings)
    if not await lock.acquire(blocking=False):
        return 0
    try:
        return await sweep(redis, settings)
    finally:
        # Lapsed during a long sweep (and maybe taken by the next): nothing to release.
        with contextlib.suppress(LockError):
            await lock.release()


async def sweep(redis: ArqRedis, settings: Settings) -> int:
    now = datetime.now(UTC)
    running = await Document.filter(run=DocumentRun.RUNNING, run_id__isnull=False).only(*SLIM)
    started = [d for d in running if d.process_begin_at is not None]
    acted: list[Document] = []
    if started:
        for document, held in zip(started, await lease_held(redis, settings, started), strict=True):
            # The lease is taken before a run starts, so a started run without one is dead.
            if (
                not held
                and await long_orphaned(redis, settings, document)
                and await restart(redis, settings, document)
            ):
                acted.append(document)
    queued_before = now - timedelta(seconds=settings.ingest_queued_timeout_seconds)
    for document in running:
        if document.process_begin_at is not None or document.updated_at > queued_before:
            continue
        if await redis.exists(job_key_prefix + parse_job_id(document.run_id)):
            continue
        if await document_runs.current(document.id, document.run_id).exists():
            log.warning("enqueued document %s again: its job was lost", document.id)
            await announce_and_enqueue(redis, settings, {document.id: document.run_id})
            acted.append(document)
    return len(acted)
