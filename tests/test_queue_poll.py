"""The worker's poll (`QueueWorker.poll`) against a real Redis: one round trip reads the
due jobs and claims those that run nowhere; the jobs in progress (here or elsewhere)
are neither started again nor sent back to the worker; a draining worker claims none."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from workers.queue_worker import QueueWorker

pytestmark = pytest.mark.sqlite_only

started: list[str] = []
release = asyncio.Event()


async def hold(ctx: dict, name: str) -> str:
    started.append(name)
    await release.wait()
    return name


def counting(pool: ArqRedis) -> list[str]:
    """The commands the worker sends through `pool` from now on (health beats aside)."""
    sent: list[str] = []
    execute = pool.execute_command

    async def recording(*args: Any, **options: Any) -> Any:
        if args[0] not in ("ZCARD", "PSETEX"):  # arq's health record, once an interval
            sent.append(str(args[0]).split()[0].upper())
        return await execute(*args, **options)

    pool.execute_command = recording  # type: ignore[method-assign]
    return sent


async def test_one_round_trip_claims_the_due_jobs_that_run_nowhere(arq_pool: ArqRedis) -> None:
    queue = f"qp-{uuid.uuid4().hex[:8]}"
    started.clear()
    release.clear()
    jobs = [await arq_pool.enqueue_job("hold", name, _queue_name=queue) for name in "abc"]
    assert all(jobs)
    theirs = jobs[1]
    assert theirs is not None
    await arq_pool.psetex(in_progress_key_prefix + theirs.job_id, 10_000, b"1")  # elsewhere
    worker = QueueWorker(
        functions=[hold], redis_pool=arq_pool, queue_name=queue, handle_signals=False
    )
    try:
        sent = counting(arq_pool)
        await worker.poll()
        await asyncio.sleep(0)
        assert sent == ["EVAL"]
        assert sorted(started) == ["a", "c"]
        assert worker.job_counter == 2

        sent.clear()
        await worker.poll()  # its own jobs are in progress: nothing comes back
        await asyncio.sleep(0)
        assert sent == ["EVAL"]
        assert sorted(started) == ["a", "c"]

        worker.allow_pick_jobs = False  # draining: nothing is claimed
        await arq_pool.delete(in_progress_key_prefix + theirs.job_id)
        sent.clear()
        await worker.poll()
        assert sent == []
        assert not await arq_pool.exists(in_progress_key_prefix + theirs.job_id)

        release.set()
        for job in jobs[::2]:
            assert job is not None
            assert await job.result(timeout=5) in ("a", "c")
    finally:
        release.set()
        await worker.close()
        for key in [key async for key in arq_pool.scan_iter("arq:*")]:
            if any(job is not None and job.job_id.encode() in key for job in jobs):
                await arq_pool.delete(key)
        await arq_pool.delete(queue)
