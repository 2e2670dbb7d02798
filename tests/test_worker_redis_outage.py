"""Workers ride out a Redis restart: arq alone ends its worker for good on the first lost
connection (seen: both workers gone after each of three ~2 s restarts). Here a private
Redis (append-only, so its keys survive) is killed under a live chat worker and a live
ingest worker and started again on the same port: each worker is still alive, logged the
outage once (not once per attempt) and its end, and serves a job again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from backend.connections import redis_pool
from backend.constants import CHAT_QUEUE, INGEST_QUEUE, queue_name
from backend.settings import Settings
from tests.support.ingest_stack import start_ingest_worker
from tests.support.live_server import ServerProcess, start_chat_worker
from tests.support.private_redis import PrivateRedis, running_private_redis
from tests.support.stack_database import stack_database

OUTAGE_SECONDS = 3.0
JOB_TIMEOUT_SECONDS = 30.0


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    async with running_private_redis(tmp_path) as server:
        yield server


Starter = Callable[[Settings, Path], Awaitable[ServerProcess]]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("queue", "start"), [(CHAT_QUEUE, start_chat_worker), (INGEST_QUEUE, start_ingest_worker)]
)
async def test_a_worker_outlives_a_redis_restart_and_serves_again(
    live_settings: Settings,
    live_log_dir: Path,
    private_redis: PrivateRedis,
    queue: str,
    start: Starter,
) -> None:
    async with stack_database(live_settings, live_log_dir) as own:
        prefix = f"outage-{uuid.uuid4().hex[:6]}"
        settings = own.model_copy(update={"redis_url": private_redis.url, "redis_prefix": prefix})
        await outlives_a_restart(settings, live_log_dir, private_redis, queue, start)


async def outlives_a_restart(
    settings: Settings, log_dir: Path, private_redis: PrivateRedis, queue: str, start: Starter
) -> None:
    worker = await start(settings, log_dir)
    try:
        assert await ping(settings, queue) == "pong"
        private_redis.kill()
        await asyncio.sleep(OUTAGE_SECONDS)
        assert worker.process.poll() is None, worker.log_tail()
        await private_redis.start()
        assert await ping(settings, queue) == "pong"
        assert worker.process.poll() is None, worker.log_tail()
        # The poll that ends the outage logs it once that poll is over: the job it started
        # may have answered a moment before.
        log = await log_once_it_says(worker, "Redis is back after")
        assert log.count("Redis is unreachable") == 1, log
        assert log.count("Redis is back after") == 1, log
    finally:
        worker.stop()


async def ping(settings: Settings, queue: str) -> str:
    """The worker's no-op job, enqueued and awaited."""
    name = queue_name(settings.redis_prefix, queue)
    pool = redis_pool(settings, name)
    try:
        job = await pool.enqueue_job("ping", _queue_name=name)
        assert job is not None
        return await job.result(timeout=JOB_TIMEOUT_SECONDS, poll_delay=0.1)
    finally:
        await pool.aclose()


async def log_once_it_says(worker: ServerProcess, words: str, within: float = 10.0) -> str:
    """The worker's log, as soon as it holds `words` (or as it is after `within` s)."""
    for _ in range(int(within / 0.1)):
        log = worker.log_path.read_text()
        if words in log:
            return log
        await asyncio.sleep(0.1)
    return worker.log_path.read_text()
