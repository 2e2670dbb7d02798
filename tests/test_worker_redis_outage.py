"""Workers ride out a Redis restart: arq alone ends its worker for good on the first lost
connection (seen: both workers gone after each of three ~2 s restarts). Here a private
Redis (append-only, so its keys survive) is killed under a live chat worker and a live
ingest worker and started again on the same port: each worker is still alive, logged the
outage once (not once per attempt) and its end, and serves a job again."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from backend.connections import redis_pool
from backend.constants import CHAT_QUEUE, INGEST_QUEUE, queue_name
from backend.settings import Settings
from tests.support.ingest_stack import start_ingest_worker
from tests.support.live_server import ServerProcess, free_port, start_chat_worker

OUTAGE_SECONDS = 3.0
JOB_TIMEOUT_SECONDS = 30.0


class PrivateRedis:
    """A redis-server of the test's own, on one port and one directory across restarts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def launch(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        self.launch()
        client = aioredis.from_url(self.url)
        try:
            for _ in range(100):
                try:
                    await client.ping()
                    return
                except (ConnectionError, OSError, aioredis.RedisError):
                    await asyncio.sleep(0.1)
            raise RuntimeError("the private redis-server did not start")
        finally:
            await client.aclose()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    await server.start()
    yield server
    if server.process and server.process.poll() is None:
        server.kill()


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
    settings = live_settings.model_copy(
        update={"redis_url": private_redis.url, "redis_prefix": f"outage-{uuid.uuid4().hex[:6]}"}
    )
    worker = await start(settings, live_log_dir)
    try:
        assert await ping(settings, queue) == "pong"
        private_redis.kill()
        await asyncio.sleep(OUTAGE_SECONDS)
        assert worker.process.poll() is None, worker.log_tail()
        await private_redis.start()
        assert await ping(settings, queue) == "pong"
        assert worker.process.poll() is None, worker.log_tail()
        log = worker.log_path.read_text()
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
