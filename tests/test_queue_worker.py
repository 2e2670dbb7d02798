"""The worker's poll starts a queued job once and leaves jobs someone runs alone."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from workers.queue_worker import QueueWorker

pytestmark = pytest.mark.sqlite_only

started: list[str] = []


async def record(ctx: dict, name: str) -> str:
    started.append(name)
    await asyncio.sleep(0.3)
    return name


def worker_on(pool: ArqRedis, queue: str) -> QueueWorker:
    return QueueWorker(functions=[record], redis_pool=pool, queue_name=queue, handle_signals=False)


async def queued_ids(pool: ArqRedis, queue: str) -> list[bytes]:
    return await pool.zrangebyscore(queue, min=float("-inf"), max=float("inf"))


async def watch_calls(pool: ArqRedis) -> int:
    stats = await pool.info("commandstats")
    return stats.get("cmdstat_watch", {}).get("calls", 0)


async def test_poll_starts_each_job_once_and_skips_jobs_run_elsewhere(arq_pool: ArqRedis) -> None:
    queue = f"qw-{uuid.uuid4().hex[:8]}"
    started.clear()
    mine = await arq_pool.enqueue_job("record", "mine", _queue_name=queue)
    theirs = await arq_pool.enqueue_job("record", "theirs", _queue_name=queue)
    assert mine is not None and theirs is not None
    # Another worker holds `theirs`: its in-progress key is set.
    await arq_pool.psetex(in_progress_key_prefix + theirs.job_id, 10_000, b"1")
    worker = worker_on(arq_pool, queue)
    try:
        await worker.start_jobs(await queued_ids(arq_pool, queue))
        await asyncio.sleep(0)
        watches = await watch_calls(arq_pool)
        for _ in range(5):
            await worker.start_jobs(await queued_ids(arq_pool, queue))
            await asyncio.sleep(0)
        # No WATCH for jobs that run: arq itself spends four commands per job per poll.
        assert await watch_calls(arq_pool) == watches
        assert started == ["mine"]
        assert list(worker.tasks) == [mine.job_id]
        assert await mine.result(timeout=5) == "mine"
        await arq_pool.delete(in_progress_key_prefix + theirs.job_id)
        await worker.start_jobs(await queued_ids(arq_pool, queue))
        assert await theirs.result(timeout=5) == "theirs"
        assert started == ["mine", "theirs"]
    finally:
        await worker.close()
        keys = [key async for key in arq_pool.scan_iter("arq:*")]
        queue_keys = [key async for key in arq_pool.scan_iter(f"{queue}*")]
        for key in keys + queue_keys:
            if mine.job_id.encode() in key or theirs.job_id.encode() in key or key in queue_keys:
                await arq_pool.delete(key)
