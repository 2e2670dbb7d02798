"""The worker's poll (`QueueWorker.poll`) against a real Redis: one round trip reads the
due jobs, claims those that run nowhere and fetches them for arq's run_job; the jobs in
progress (here or elsewhere) are neither started again nor sent back to the worker; a
draining worker claims none."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.worker import JobExecutionFailed

from workers.job_claims import RETRY_KEY_SECONDS, FetchedJob
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


def pipelines(pool: ArqRedis) -> list[list[str]]:
    """The commands of each pipeline the worker runs through `pool` from now on."""
    ran: list[list[str]] = []
    make = pool.pipeline

    def recording(*args: Any, **options: Any) -> Any:
        pipe = make(*args, **options)
        execute = pipe.execute

        async def executing(*a: Any, **k: Any) -> Any:
            ran.append([str(c[0][0]).split()[0].upper() for c in pipe.command_stack])
            return await execute(*a, **k)

        pipe.execute = executing  # type: ignore[method-assign]
        return pipe

    pool.pipeline = recording  # type: ignore[method-assign]
    return ran


async def tried(ctx: dict, name: str) -> tuple[str, int]:
    return name, ctx["job_try"]


async def test_the_poll_fetches_the_jobs_it_claims(arq_pool: ArqRedis) -> None:
    """arq's run_job fetch (GET job, INCR and EXPIRE its try) rides the poll's script: a
    job runs with its try counted once and no MULTI of its own; a job whose data is gone
    fails as arq fails it (expired)."""
    queue = f"qp-{uuid.uuid4().hex[:8]}"
    first = await arq_pool.enqueue_job("tried", "a", _queue_name=queue)
    gone = await arq_pool.enqueue_job("tried", "b", _queue_name=queue)
    assert first is not None and gone is not None
    await arq_pool.delete(job_key_prefix + gone.job_id)
    worker = QueueWorker(
        functions=[tried], redis_pool=arq_pool, queue_name=queue, handle_signals=False
    )
    try:
        ran = pipelines(arq_pool)
        sent = counting(arq_pool)
        await worker.poll()
        assert sent == ["EVAL"]
        assert await first.result(timeout=5) == ("a", 1)
        with pytest.raises(JobExecutionFailed, match="job expired"):
            await gone.result(timeout=5)
        await asyncio.gather(*worker.tasks.values())
        # arq's finishing transactions (and the test's result reads), but no fetch: no
        # pipeline counted a try.
        assert ran and not [stack for stack in ran if {"INCR", "INCRBY"} & set(stack)]
    finally:
        await worker.close()
        for job in (first, gone):
            keys = [key async for key in arq_pool.scan_iter(f"arq:*{job.job_id}")]
            if keys:
                await arq_pool.delete(*keys)
        await arq_pool.delete(queue)


async def test_a_running_job_polled_again_is_not_a_new_try(arq_pool: ArqRedis) -> None:
    """When a running job's in-progress key lapses, the poll's script claims it again; the
    worker skips it (it runs here) and its try counter stays what it was."""
    queue = f"qp-{uuid.uuid4().hex[:8]}"
    started.clear()
    release.clear()
    job = await arq_pool.enqueue_job("hold", "a", _queue_name=queue)
    assert job is not None
    worker = QueueWorker(
        functions=[hold], redis_pool=arq_pool, queue_name=queue, handle_signals=False
    )
    try:
        await worker.poll()
        await asyncio.sleep(0.05)
        assert started == ["a"]
        assert await arq_pool.get(retry_key_prefix + job.job_id) == b"1"
        assert 0 < await arq_pool.ttl(retry_key_prefix + job.job_id) <= RETRY_KEY_SECONDS
        await arq_pool.delete(in_progress_key_prefix + job.job_id)  # lapsed
        await worker.poll()
        await asyncio.sleep(0.05)
        assert started == ["a"]
        assert await arq_pool.get(retry_key_prefix + job.job_id) == b"1"
        release.set()
        assert await job.result(timeout=5) == "a"
    finally:
        release.set()
        await worker.close()
        keys = [key async for key in arq_pool.scan_iter(f"arq:*{job.job_id}")]
        if keys:
            await arq_pool.delete(*keys)
        await arq_pool.delete(queue)


async def test_the_fetched_job_answers_only_arq_s_own_fetch() -> None:
    """If arq's run_job ever fetches otherwise, the stand-in says so instead of answering."""
    fetched = FetchedJob("j1", b"job", 3)
    async with fetched.pipeline(transaction=True) as pipe:
        pipe.get(job_key_prefix + "j1")
        pipe.incr(retry_key_prefix + "j1")
        pipe.expire(retry_key_prefix + "j1", RETRY_KEY_SECONDS)
        assert await pipe.execute() == [b"job", 3, True]
    assert fetched.used
    async with FetchedJob("j1", b"job", 3).pipeline() as pipe:
        pipe.get(job_key_prefix + "j1")
        pipe.incr(retry_key_prefix + "j1")
        with pytest.raises(RuntimeError, match="must follow arq's run_job"):
            await pipe.execute()
