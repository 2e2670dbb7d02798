"""`/readyz` names a queue with no live worker (issue 18 item 4): before, it answered 200
while both workers had exited for good. A live web process reads the workers' arq
heartbeats in Redis: "degraded" (200) naming each queue without a worker, by default;
a 503 naming it with READINESS_REQUIRES_WORKERS; within the 2 s budget either way."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from backend.settings import Settings
from tests.support.live_server import (
    ServerProcess,
    free_port,
    spawn,
    start_chat_worker,
    start_hypercorn,
)

pytestmark = pytest.mark.sqlite_only

BUDGET_SECONDS = 2.0
EXIT_TIMEOUT_SECONDS = 15.0


@pytest.fixture
def live_settings(live_settings: Settings) -> Settings:
    """The live settings under a Redis prefix of the test's own: the session's shared chat
    worker (started by other modules) must not count as this test's live worker."""
    return live_settings.model_copy(update={"redis_prefix": f"readyz-{uuid.uuid4().hex[:8]}"})


async def timed_readyz(base_url: str) -> tuple[int, dict, float]:
    async with httpx.AsyncClient(timeout=5) as client:
        started = time.monotonic()
        response = await client.get(f"{base_url}/readyz")
        return response.status_code, response.json(), time.monotonic() - started


async def test_readyz_names_the_queues_without_a_live_worker(
    live_settings: Settings, live_log_dir: Path
) -> None:
    server = await start_hypercorn(live_settings, live_log_dir)
    worker: ServerProcess | None = None
    try:
        status, body, elapsed = await timed_readyz(server.base_url)
        assert (status, body["status"]) == (200, "degraded"), body
        assert set(body["down"]) == {"chat workers", "ingest workers"}
        assert "chat workers (no live worker" in body["message"]
        assert elapsed < BUDGET_SECONDS

        worker = await start_chat_worker(live_settings, live_log_dir)
        status, body, elapsed = await timed_readyz(server.base_url)
        assert (status, set(body["down"])) == (200, {"ingest workers"}), body
        assert elapsed < BUDGET_SECONDS

        # A stopped worker deletes its heartbeat key; a killed one lets it expire (11 s).
        worker.signal(signal.SIGTERM)
        worker.process.wait(EXIT_TIMEOUT_SECONDS)
        status, body, _ = await timed_readyz(server.base_url)
        assert set(body["down"]) == {"chat workers", "ingest workers"}, body
    finally:
        if worker is not None:
            worker.stop()
        server.server.stop()


async def test_with_workers_required_a_queue_without_one_is_a_503(
    live_settings: Settings, live_log_dir: Path
) -> None:
    strict = live_settings.model_copy(update={"readiness_requires_workers": True})
    port = free_port()
    args = [sys.executable, "-m", "hypercorn", "backend.asgi:app", "--bind", f"127.0.0.1:{port}"]
    server = spawn(f"hypercorn-strict-{port}", args, strict, live_log_dir)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body, elapsed = await timed_readyz(f"http://127.0.0.1:{port}")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, server.log_tail()
                await asyncio.sleep(0.2)
        assert status == 503, body
        assert body["message"] == (
            "Not ready: chat workers (no live worker (no worker heartbeat in Redis)); "
            "ingest workers (no live worker (no worker heartbeat in Redis))"
        )
        assert elapsed < BUDGET_SECONDS
    finally:
        server.stop()
