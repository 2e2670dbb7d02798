"""Both arq worker entry points start, serve their queue and pass arq's health check."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from backend.constants import CHAT_QUEUE, INGEST_QUEUE, queue_name
from backend.settings import Settings


def worker_env(settings: Settings, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": prefix,
        "DATA_DIR": str(settings.data_dir),
        "SECRET_KEY": settings.secret_key,
        "LOG_LEVEL": "WARNING",
    }


@pytest.mark.parametrize(("module", "queue"), [("chat", CHAT_QUEUE), ("ingest", INGEST_QUEUE)])
async def test_worker_serves_its_queue_and_passes_health_check(
    app, settings: Settings, tmp_path: Path, module: str, queue: str
) -> None:
    prefix = f"wt-{uuid.uuid4().hex[:8]}"
    env = worker_env(settings, prefix)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers",
        module,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pool: ArqRedis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        job = await pool.enqueue_job("ping", _queue_name=queue_name(prefix, queue))
        assert job is not None
        assert await job.result(timeout=30) == "pong"
        for _ in range(100):
            check = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "workers", module, "--check"],
                env=env,
                capture_output=True,
            )
            if check.returncode == 0:
                break
            await asyncio.sleep(0.2)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        worker.terminate()
        await asyncio.wait_for(worker.wait(), 15)
        keys = [key async for key in pool.scan_iter(f"{prefix}:*")]
        if keys:
            await pool.delete(*keys)
        await pool.aclose()


async def test_health_check_fails_without_a_worker(settings: Settings) -> None:
    env = worker_env(settings, f"none-{uuid.uuid4().hex[:8]}")
    check = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "workers", "ingest", "--check"],
        env=env,
        capture_output=True,
    )
    assert check.returncode == 1
