"""The ingest pipeline's edges, called in-process against the real SQL database, Redis
and search store: the document time limit, stale and doubly-delivered runs, the sweep
that recovers documents whose worker died or whose job was lost, and the feed's bounds.
The whole path through a worker process is in tests/test_ingestion_live.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from quart.testing import QuartClient

from backend.connections import redis_pool
from backend.constants import document_feed_key, ingest_lease_key, ingest_restarts_key
from backend.knowledge import document_runs, ingest_recovery
from backend.knowledge.ingestion import IngestContext, ingest_document
from backend.knowledge.parse_queue import parse_job_id
from backend.knowledge.status_feed import event_of, publish
from backend.models import Document
from backend.models.knowledge import DocumentRun
from backend.search.stores import search_store
from backend.settings import Settings
from backend.storage.configured import document_storage
from tests.support.accounts import Account
from tests.support.knowledge import create_dataset, upload_ok


@pytest.fixture
async def arq_redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    redis = redis_pool(settings)
    yield redis
    await redis.aclose()


def context(redis: ArqRedis, settings: Settings) -> IngestContext:
    return IngestContext(redis, settings, search_store(), document_storage(settings))


async def queued(
    client: QuartClient, owner: Account, text: bytes = b"Some text."
) -> tuple[Document, str]:
    dataset = await create_dataset(client, owner)
    [uploaded] = await upload_ok(client, owner, dataset["id"], [("a.txt", text)])
    document = await Document.get(id=uploaded["id"])
    run_id = (await document_runs.queue_for_parsing([document]))[document.id]
    return document, run_id


async def test_a_document_over_the_time_limit_ends_fail_and_frees_its_lease(
    client: QuartClient, owner: Account, settings: Settings, arq_redis: ArqRedis
) -> None:
    document, run_id = await queued(client, owner)
    hurried = settings.model_copy(update={"ingest_document_timeout_seconds": 0.001})
    assert await ingest_document(context(arq_redis, hurried), document.id, run_id) == "failed"
    failed = await Document.get(id=document.id)
    assert failed.run is DocumentRun.FAIL
    assert "INGEST_DOCUMENT_TIMEOUT_SECONDS" in failed.progress_msg.rsplit("\n", 1)[-1]
    assert not await arq_redis.exists(ingest_lease_key(settings.redis_prefix, document.id))


async def test_a_stale_or_leased_run_is_skipped(
    client: QuartClient, owner: Account, settings: Settings, arq_redis: ArqRedis
) -> None:
    document, run_id = await queued(client, owner)
    lease = ingest_lease_key(settings.redis_prefix, document.id)
    await arq_redis.set(lease, "someone-else", px=5000)
    outcome = await ingest_document(context(arq_redis, settings), document.id, run_id)
    assert outcome == "skipped: another job is working on this document"
    assert await arq_redis.get(lease) == b"someone-else"  # not ours to release
    await arq_redis.delete(lease)
    await document_runs.cancel([await Document.get(id=document.id)])
    outcome = await ingest_document(context(arq_redis, settings), document.id, run_id)
    assert outcome == "skipped: the run is no longer live"
    assert (await Document.get(id=document.id)).run is DocumentRun.CANCEL


async def started(document: Document, run_id: str, ago: float) -> None:
    """The run as a worker left it `ago` seconds ago (started, no lease any more)."""
    await document_runs.start(document.id, run_id)
    begun = datetime.now(UTC) - timedelta(seconds=ago)
    await Document.filter(id=document.id).update(process_begin_at=begun)


async def sweep_twice(redis: ArqRedis, settings: Settings) -> int:
    """Two sweeps a third of a lease apart: the first only marks a run without its lease
    (its job may take the lease back after a Redis outage), the second calls it dead."""
    await ingest_recovery.sweep(redis, settings)
    await asyncio.sleep(settings.ingest_lease_seconds / 3)
    return await ingest_recovery.sweep(redis, settings)


async def test_the_sweep_requeues_a_dead_run_then_fails_it(
    client: QuartClient, owner: Account, settings: Settings, arq_redis: ArqRedis
) -> None:
    document, run_id = await queued(client, owner)
    limited = settings.model_copy(update={"ingest_max_restarts": 1, "ingest_lease_seconds": 0.6})
    await arq_redis.delete(ingest_restarts_key(settings.redis_prefix, document.id))
    await started(document, run_id, ago=30)
    await ingest_recovery.sweep(arq_redis, limited)
    assert (await Document.get(id=document.id)).run_id == run_id, "called dead at first sight"
    await asyncio.sleep(limited.ingest_lease_seconds / 3)
    assert await ingest_recovery.sweep(arq_redis, limited) >= 1
    again = await Document.get(id=document.id)
    assert again.run is DocumentRun.RUNNING and again.run_id != run_id
    assert again.process_begin_at is None and again.progress == 0
    assert again.progress_msg.endswith("parsing it again (restart 1 of 1).")
    assert await arq_redis.exists(job_key_prefix + parse_job_id(again.run_id))
    # The old run is stale now: a late job of it does nothing.
    assert await document_runs.start(document.id, run_id) is None

    await started(again, again.run_id, ago=30)
    assert await sweep_twice(arq_redis, limited) >= 1
    failed = await Document.get(id=document.id)
    assert failed.run is DocumentRun.FAIL
    assert "stopped unexpectedly twice" in failed.progress_msg.rsplit("\n", 1)[-1]


async def test_the_sweep_leaves_live_and_waiting_runs_alone(
    client: QuartClient, owner: Account, settings: Settings, arq_redis: ArqRedis
) -> None:
    leased, leased_run = await queued(client, owner)
    await started(leased, leased_run, ago=30)
    await arq_redis.set(ingest_lease_key(settings.redis_prefix, leased.id), "alive", px=5000)
    waiting, waiting_run = await queued(client, owner)
    await arq_redis.set(job_key_prefix + parse_job_id(waiting_run), b"job", px=5000)
    await Document.filter(id=waiting.id).update(updated_at=datetime.now(UTC) - timedelta(hours=1))
    fresh, fresh_run = await queued(client, owner)  # queued just now: its job may be on its way

    await ingest_recovery.sweep(arq_redis, settings)
    for document, run_id in ((leased, leased_run), (waiting, waiting_run), (fresh, fresh_run)):
        assert (await Document.get(id=document.id)).run_id == run_id
    assert not await arq_redis.exists(job_key_prefix + parse_job_id(fresh_run))

    # The waiting one's job vanished (Redis lost it): it is enqueued again, same run.
    await arq_redis.delete(job_key_prefix + parse_job_id(waiting_run))
    await ingest_recovery.sweep(arq_redis, settings)
    assert await arq_redis.exists(job_key_prefix + parse_job_id(waiting_run))
    assert (await Document.get(id=waiting.id)).run_id == waiting_run
    await arq_redis.delete(ingest_lease_key(settings.redis_prefix, leased.id))


async def test_a_sweeper_killed_mid_sweep_holds_the_next_sweeps_back_two_intervals_at_most(
    arq_redis: ArqRedis, settings: Settings
) -> None:
    """Its lock taken and never released, as by a worker SIGKILLed mid-sweep (the live crash
    test saw no recovery for the former lock's 60 s): the sweeps wait, then run again."""
    fast = settings.model_copy(update={"ingest_sweep_interval_seconds": 1})
    dead = ingest_recovery.sweep_lock(arq_redis, fast)
    assert await dead.acquire(blocking=False)
    swept_after = None
    begun = asyncio.get_running_loop().time()
    for _ in range(60):
        # A sweep that ran releases the lock: the next acquire succeeds.
        await ingest_recovery.sweep_documents(arq_redis, fast)
        probe = ingest_recovery.sweep_lock(arq_redis, fast)
        if await probe.acquire(blocking=False):
            await probe.release()
            swept_after = asyncio.get_running_loop().time() - begun
            break
        await asyncio.sleep(0.1)
    assert swept_after is not None and swept_after <= 2 * fast.ingest_sweep_interval_seconds + 0.5


async def test_the_feed_is_bounded_in_length_and_time(
    client: QuartClient, owner: Account, settings: Settings, arq_redis: ArqRedis
) -> None:
    document, _ = await queued(client, owner)
    small = settings.model_copy(update={"feed_max_events": 100, "feed_retention_seconds": 60})
    key = document_feed_key(settings.redis_prefix, owner.id)
    await arq_redis.delete(key)
    await arq_redis.xadd(key, {"type": "document.progress", "data": "{}"}, id="1-0")
    for _ in range(350):
        await publish(arq_redis, small, owner.id, event_of(document))
    # Trimming is approximate (whole stream nodes), never beyond one node of slack.
    assert 100 <= await arq_redis.xlen(key) <= 200
    assert not await arq_redis.xrange(key, min="1-0", max="1-0")  # older than the retention
    assert 0 < await arq_redis.ttl(key) <= 60
    await arq_redis.delete(key)


class LeaseWitness:
    """The search store, noting whether the document's lease was held while it indexed."""

    def __init__(self, store: object, redis: ArqRedis, settings: Settings) -> None:
        self.store, self.redis, self.settings = store, redis, settings
        self.lease_held: list[bool] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def replace_document(self, document_id: str, records: list) -> None:
        key = ingest_lease_key(self.settings.redis_prefix, document_id)
        self.lease_held.append(bool(await self.redis.exists(key)))
        await self.store.replace_document(document_id, records)


async def test_indexing_happens_under_the_lease(
    client: QuartClient, owner: Account, settings: Settings, arq_redis: ArqRedis
) -> None:
    """Writing to Elasticsearch takes seconds: without its lease, a run being indexed
    looks dead to another worker's sweep, which re-queued it (seen with two workers)."""
    document, run_id = await queued(client, owner)
    store = LeaseWitness(search_store(), arq_redis, settings)
    ingest = IngestContext(arq_redis, settings, store, document_storage(settings))
    assert await ingest_document(ingest, document.id, run_id) == "done"
    assert store.lease_held == [True]
    assert not await arq_redis.exists(ingest_lease_key(settings.redis_prefix, document.id))
