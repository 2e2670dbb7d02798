"""Dependency outages mid-ingest spend none of the document's restarts: a private
PostgreSQL stopped, a private Redis paused (SIGSTOP) or restarted, each for longer than the
lease, while a live ingest worker embeds a document; the run ends DONE with every chunk,
its log names no restart, and the worker is still alive. (The search store down at index time is in
tests/test_search_outage_live.py.)

The lease is short (INGEST_LEASE_SECONDS 1.5) and the sweep runs every second, so a lapsed
lease would be taken for a dead worker within the outage if nothing held it back."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from backend.settings import Settings
from tests.support.ingest_stack import IngestStack, ingest_stack, wait_for_run
from tests.support.knowledge import MULTIPART, multipart
from tests.support.own_database import sign_in
from tests.support.private_postgres import PrivatePostgres, private_services
from tests.support.private_redis import PrivateRedis

pytestmark = pytest.mark.sqlite_only

TEXT = "\n\n".join(f"Section {n}: the weir, the sluice gate and the mill race." for n in range(60))
OUTAGE_SECONDS = 4.0  # well past the 1.5 s lease


@dataclass
class OutageStack:
    ingest: IngestStack
    postgres: PrivatePostgres
    redis: PrivateRedis


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[OutageStack]:
    async with (
        private_services(settings, tmp_path_factory.mktemp("ingest-outage-redis")) as services,
        ingest_stack(
            services.settings,
            tmp_path_factory.mktemp("ingest-outage"),
            ingest_lease_seconds=1.5,
            ingest_sweep_interval_seconds=1,
            ingest_outage_retry_seconds=60,
        ) as running,
    ):
        yield OutageStack(running, services.postgres, services.redis)


async def embedding(client: httpx.AsyncClient) -> tuple[str, str]:
    """A document whose run is embedding (slowly) now: (dataset id, document id)."""
    created = await client.post(
        "/api/v1/datasets", json={"name": "mill", "parser_config": {"chunk_token_num": 16}}
    )
    assert created.status_code == 201, created.text
    dataset_id = created.json()["data"]["id"]
    uploaded = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart([(f"mill-{time.monotonic_ns()}.txt", TEXT.encode())]),
        headers={"Content-Type": MULTIPART},
    )
    assert uploaded.status_code == 201, uploaded.text
    document_id = uploaded.json()["data"][0]["id"]
    parsed = await client.post(
        f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document_id]}
    )
    assert parsed.status_code == 200, parsed.text
    await wait_for_run(client, dataset_id, document_id, runs=("RUNNING",), progress_above=0.2)
    return dataset_id, document_id


async def assert_done_without_restart(
    stack: OutageStack, client: httpx.AsyncClient, dataset_id: str, document_id: str
) -> None:
    deadline = time.monotonic() + 60
    while True:  # the web answers 503 for a moment after the outage
        try:
            document = await wait_for_run(client, dataset_id, document_id, within=60)
            break
        except AssertionError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)
    assert document["run"] == "DONE", document["progress_msg"]
    assert "stopped unexpectedly" not in document["progress_msg"], document["progress_msg"]
    assert document["chunk_count"] > 0
    for worker in stack.ingest.workers:
        assert worker.process.poll() is None, worker.log_tail()


async def test_postgresql_stopped_mid_embedding_spends_no_restart(stack: OutageStack) -> None:
    stack.ingest.embeddings.delay = 0.4
    async with httpx.AsyncClient(base_url=stack.ingest.base_url, timeout=30) as client:
        client.headers.update(await sign_in(client))
        dataset_id, document_id = await embedding(client)
        stack.postgres.stop("fast")
        try:
            await asyncio.sleep(OUTAGE_SECONDS)
        finally:
            stack.postgres.start()
        await assert_done_without_restart(stack, client, dataset_id, document_id)
    log = "\n".join(w.log_path.read_text() for w in stack.ingest.workers)
    assert "internal error" not in log, log[-3000:]


@pytest.mark.parametrize("fault", ["paused", "restarted"])
async def test_redis_paused_or_restarted_mid_embedding_spends_no_restart(
    stack: OutageStack, fault: str
) -> None:
    """Paused (SIGSTOP): commands wait, and the lease has lapsed when Redis answers again.
    Restarted (killed, append-only): commands are refused meanwhile."""
    stack.ingest.embeddings.delay = 0.4
    async with httpx.AsyncClient(base_url=stack.ingest.base_url, timeout=30) as client:
        client.headers.update(await sign_in(client))
        dataset_id, document_id = await embedding(client)
        assert stack.redis.process is not None
        if fault == "paused":
            stack.redis.process.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(OUTAGE_SECONDS)
            finally:
                stack.redis.process.send_signal(signal.SIGCONT)
        else:
            stack.redis.kill()
            try:
                await asyncio.sleep(OUTAGE_SECONDS)
            finally:
                await stack.redis.start()
        await assert_done_without_restart(stack, client, dataset_id, document_id)
