"""Enqueued jobs wake their workers: picked up at once, though idle workers rarely poll."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis

from backend.connections import redis_pool
from backend.constants import queue_wake_key
from backend.job_queue import WakeListener, enqueue
from backend.settings import Settings
from workers.queue_worker import QueueWorker

pytestmark = pytest.mark.sqlite_only

IDLE_POLL_SECONDS = 30.0
started: dict[str, float] = {}
arrivals: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)


async def mark(ctx: dict, name: str) -> str:
    started[name] = time.monotonic()
    arrivals[name].set()
    return name


async def wait_started(name: str) -> None:
    await asyncio.wait_for(arrivals[name].wait(), timeout=5)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[ArqRedis]:
    pool = redis_pool(settings)
    yield pool
    await pool.aclose()


@pytest.fixture
async def queue(pool: ArqRedis) -> AsyncIterator[str]:
    name = f"jq-test-{uuid.uuid4().hex[:8]}"
    yield name
    keys = [key async for key in pool.scan_iter(f"{name}*")]
    keys += [key async for key in pool.scan_iter("arq:*")]
    if keys:
        await pool.delete(*keys)


@pytest.fixture
async def worker(pool: ArqRedis, queue: str) -> AsyncIterator[QueueWorker]:
    worker = QueueWorker(
        functions=[mark],
        redis_pool=pool,
        queue_name=queue,
        poll_delay=IDLE_POLL_SECONDS,
        handle_signals=False,
    )
    running = asyncio.create_task(worker.async_run())
    await asyncio.sleep(0.3)  # the first poll has run; the worker now waits for a wake
    yield worker
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)  # jobs finish
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await worker.close()


async def test_an_enqueued_job_starts_at_once_though_the_worker_polls_every_30_s(
    pool: ArqRedis, queue: str, worker: QueueWorker
) -> None:
    started.clear()
    arrivals.clear()
    for name in ("first", "second"):
        enqueued_at = time.monotonic()
        await enqueue(pool, queue, "mark", name)
        await wait_started(name)
        assert started[name] - enqueued_at < IDLE_POLL_SECONDS / 10


async def test_a_job_enqueued_without_a_wake_waits_for_the_idle_poll(
    pool: ArqRedis, queue: str, worker: QueueWorker
) -> None:
    started.clear()
    arrivals.clear()
    await pool.enqueue_job("mark", "unannounced", _queue_name=queue)
    await asyncio.sleep(1.0)
    assert "unannounced" not in started  # so the test above measures the wake, not polling
    await enqueue(pool, queue, "mark", "announced")
    # One poll starts every queued job, the unannounced one too.
    await wait_started("announced")
    await wait_started("unannounced")


async def test_every_listener_sees_each_wake_and_none_is_lost_between_waits(
    pool: ArqRedis, queue: str
) -> None:
    first, second = WakeListener(pool, queue), WakeListener(pool, queue)
    assert not await first.wait(0.05)
    await pool.xadd(queue_wake_key(queue), {"j": "1"})
    assert await first.wait(5) and await second.wait(5)
    # Announced while nobody waits (a worker busy polling): the next wait returns at once.
    await pool.xadd(queue_wake_key(queue), {"j": "1"})
    began = time.monotonic()
    assert await first.wait(IDLE_POLL_SECONDS)
    assert time.monotonic() - began < IDLE_POLL_SECONDS / 10
    assert not await first.wait(0.05)
