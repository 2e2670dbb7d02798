"""A document that ends while Redis is away still gets its end into the owner's status feed
(issue 18): before, the worker published `document.done` once and dropped it when Redis
refused, so a subscriber (SSE, WebSocket) waited on a document that was long DONE.

A private Redis is killed (append-only, so the feed survives) while a live ingest worker
embeds the last batches of a document; the run ends DONE in SQL meanwhile, and its end is
retried until Redis is back: the feed then holds exactly one `document.done` for it, with
the chunk count, after no `document.failed`, and no restart was spent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from backend.constants import ingest_restarts_key
from backend.settings import Settings
from tests.support.ingest_stack import IngestStack, ingest_stack, wait_for_run
from tests.support.knowledge import MULTIPART, multipart
from tests.support.own_database import sign_in
from tests.support.private_redis import PrivateRedis

pytestmark = pytest.mark.sqlite_only

TEXT = "\n\n".join(f"Section {n}: the weir, the sluice gate and the mill race." for n in range(60))
# The worker's line when publishing the end meets the outage (backend/outage.py).
END_RETRIED = "Redis (reporting) is unreachable"


@pytest.fixture(scope="module")
async def redis_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("ingest-end-redis"))
    await server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
async def stack(
    app: object,
    settings: Settings,
    redis_server: PrivateRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[IngestStack]:
    async with ingest_stack(
        settings.model_copy(update={"redis_url": redis_server.url}),
        tmp_path_factory.mktemp("ingest-end-outage"),
        ingest_lease_seconds=1.5,
        ingest_sweep_interval_seconds=1,
        ingest_outage_retry_seconds=60,
    ) as running:
        yield running


async def wait_for_log(path: Path, line: str, within: float) -> None:
    deadline = time.monotonic() + within
    while line not in await asyncio.to_thread(path.read_text, errors="replace"):
        assert time.monotonic() < deadline, f"never logged {line!r}"
        await asyncio.sleep(0.1)


async def feed_events(redis_url: str, prefix: str, document_id: str) -> list[tuple[str, dict]]:
    """Every event of the document in any feed under `prefix`, oldest first."""
    client = aioredis.from_url(redis_url)
    try:
        found: list[tuple[str, dict]] = []
        async for key in client.scan_iter(match=f"{prefix}:feed:*"):
            for _, fields in await client.xrange(key):
                data = json.loads(fields[b"data"])
                if data["document_id"] == document_id:
                    found.append((fields[b"type"].decode(), data))
        return found
    finally:
        await client.aclose()


async def test_a_run_ending_while_redis_is_down_still_publishes_its_end(
    stack: IngestStack, redis_server: PrivateRedis
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        client.headers.update(await sign_in(client))
        created = await client.post(
            "/api/v1/datasets", json={"name": "mill", "parser_config": {"chunk_token_num": 16}}
        )
        dataset_id = created.json()["data"]["id"]
        uploaded = await client.post(
            f"/api/v1/datasets/{dataset_id}/documents",
            content=multipart([("mill.txt", TEXT.encode())]),
            headers={"Content-Type": MULTIPART},
        )
        document_id = uploaded.json()["data"][0]["id"]
        stack.embeddings.delay = 0.3
        try:
            parsed = await client.post(
                f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document_id]}
            )
            assert parsed.status_code == 200, parsed.text
            await wait_for_run(client, dataset_id, document_id, ("RUNNING",), progress_above=0.7)
            redis_server.kill()
            try:
                # The run ends (SQL, the embedded search store) and its end is retried.
                [worker] = stack.workers
                await wait_for_log(worker.log_path, END_RETRIED, within=30)
            finally:
                await redis_server.start()
        finally:
            stack.embeddings.delay = 0
        deadline = time.monotonic() + 30
        while True:  # the web answers 503 for a moment after the outage
            try:
                document = await wait_for_run(client, dataset_id, document_id, within=30)
                break
            except AssertionError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.5)
    assert document["run"] == "DONE", document["progress_msg"]
    assert "stopped unexpectedly" not in document["progress_msg"]
    prefix = stack.settings.redis_prefix
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + 30
    while not any(kind == "document.done" for kind, _ in events):
        assert time.monotonic() < deadline, f"the end never reached the feed: {events}"
        await asyncio.sleep(0.2)
        events = await feed_events(redis_server.url, prefix, document_id)
    kinds = [kind for kind, _ in events]
    assert kinds.count("document.done") == 1 and "document.failed" not in kinds, kinds
    assert kinds[-1] == "document.done", kinds
    assert events[-1][1]["chunk_count"] == document["chunk_count"] > 20
    client = aioredis.from_url(redis_server.url)
    try:
        assert await client.get(ingest_restarts_key(prefix, document_id)) is None
    finally:
        await client.aclose()
    assert stack.workers[0].process.poll() is None, stack.workers[0].log_tail()
