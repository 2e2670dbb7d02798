"""Redis away while a document is parsed, under two live ingest workers (issue 18).

- Its end still reaches the owner's status feed: before, the worker published
  `document.done` once and dropped it when Redis refused, so a subscriber (SSE,
  WebSocket) waited on a document that was long DONE. A private Redis is killed
  (append-only, so the feed survives), or paused (SIGSTOP), over the last batches; the run
  ends DONE in SQL meanwhile and its end is retried until Redis is back: the feed then
  holds exactly one `document.done` (a paused Redis runs a timed-out attempt when it
  resumes: the retry must not add a second), after no `document.failed`.
- A pause mid-embedding longer than the socket timeout (REDIS_SOCKET_TIMEOUT_SECONDS 1 s
  here: commands fail with TimeoutError) and than the lease (1.5 s): the job rides it out,
  the other worker's sweeper does not take the document over, and no restart is spent.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from backend.constants import document_feed_key, ingest_end_key, ingest_restarts_key
from backend.knowledge.status_feed import publish_once
from backend.settings import Settings
from schemas.documents import Run
from schemas.feed import DocumentEvent, FeedEventType
from tests.support.ingest_stack import IngestStack, ingest_stack, wait_for_run
from tests.support.knowledge import MULTIPART, multipart
from tests.support.own_database import sign_in
from tests.support.private_redis import PrivateRedis, running_private_redis

pytestmark = pytest.mark.sqlite_only

TEXT = "\n\n".join(f"Section {n}: the weir, the sluice gate and the mill race." for n in range(60))
# The worker's line when publishing the end meets the outage (backend/outage.py).
END_RETRIED = "Redis (reporting) is unreachable"


@pytest.fixture(scope="module")
async def redis_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrivateRedis]:
    async with running_private_redis(tmp_path_factory.mktemp("ingest-end-redis")) as server:
        yield server


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
        redis_socket_timeout_seconds=1.0,
        workers=2,
    ) as running:
        yield running


def logs_of(stack: IngestStack) -> str:
    return "\n".join(worker.log_path.read_text(errors="replace") for worker in stack.workers)


async def wait_for_log(stack: IngestStack, line: str, within: float) -> None:
    """Until a worker of the stack logs `line` (once more than it had when called)."""
    before = (await asyncio.to_thread(logs_of, stack)).count(line)
    deadline = time.monotonic() + within
    while (await asyncio.to_thread(logs_of, stack)).count(line) <= before:
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


async def parsing(client: httpx.AsyncClient) -> tuple[str, str]:
    """A new user's document queued for parsing: (dataset id, document id)."""
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
    parsed = await client.post(
        f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document_id]}
    )
    assert parsed.status_code == 200, parsed.text
    return dataset_id, document_id


async def finished(client: httpx.AsyncClient, dataset_id: str, document_id: str) -> dict:
    deadline = time.monotonic() + 30
    while True:  # the web answers 503 for a moment after the outage
        try:
            return await wait_for_run(client, dataset_id, document_id, within=30)
        except AssertionError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)


async def assert_done_once_without_restart(
    stack: IngestStack, redis_server: PrivateRedis, document: dict
) -> None:
    assert document["run"] == "DONE", document["progress_msg"]
    assert "stopped unexpectedly" not in document["progress_msg"], document["progress_msg"]
    prefix = stack.settings.redis_prefix
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + 30
    while not any(kind == "document.done" for kind, _ in events):
        assert time.monotonic() < deadline, f"the end never reached the feed: {events}"
        await asyncio.sleep(0.2)
        events = await feed_events(redis_server.url, prefix, document["id"])
    await asyncio.sleep(0.5)  # a late second end, if there were one, is in by now
    events = await feed_events(redis_server.url, prefix, document["id"])
    kinds = [kind for kind, _ in events]
    assert kinds.count("document.done") == 1 and "document.failed" not in kinds, kinds
    assert kinds[-1] == "document.done", kinds
    assert events[-1][1]["chunk_count"] == document["chunk_count"] > 20
    client = aioredis.from_url(redis_server.url)
    try:
        assert await client.get(ingest_restarts_key(prefix, document["id"])) is None
    finally:
        await client.aclose()
    for worker in stack.workers:
        assert worker.process.poll() is None, worker.log_tail()


@pytest.mark.parametrize("fault", ["killed", "paused"])
async def test_a_run_ending_while_redis_is_away_publishes_its_end_once(
    stack: IngestStack, redis_server: PrivateRedis, fault: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        stack.embeddings.delay = 0.3
        try:
            dataset_id, document_id = await parsing(client)
            await wait_for_run(client, dataset_id, document_id, ("RUNNING",), progress_above=0.7)
            assert redis_server.process is not None
            if fault == "killed":
                redis_server.kill()
            else:
                redis_server.process.send_signal(signal.SIGSTOP)
            try:
                # The run ends (SQL, the embedded search store) and its end is retried.
                await wait_for_log(stack, END_RETRIED, within=30)
            finally:
                if fault == "killed":
                    await redis_server.start()
                else:
                    redis_server.process.send_signal(signal.SIGCONT)
        finally:
            stack.embeddings.delay = 0
        document = await finished(client, dataset_id, document_id)
    await assert_done_once_without_restart(stack, redis_server, document)


async def test_a_pause_past_the_socket_timeout_and_the_lease_spends_no_restart(
    stack: IngestStack, redis_server: PrivateRedis
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        # 2 chunks a batch (sized to about 1 s by the measured pace): 30 batches, 12 s.
        stack.embeddings.delay = 0.4
        try:
            dataset_id, document_id = await parsing(client)
            await wait_for_run(client, dataset_id, document_id, ("RUNNING",), progress_above=0.2)
            assert redis_server.process is not None
            redis_server.process.send_signal(signal.SIGSTOP)
            try:
                await wait_for_log(stack, "failed (TimeoutError", within=10)
                await asyncio.sleep(2.0)  # past the 1.5 s lease (Redis expires it by the clock)
            finally:
                redis_server.process.send_signal(signal.SIGCONT)
            document = await finished(client, dataset_id, document_id)
        finally:
            stack.embeddings.delay = 0
    await assert_done_once_without_restart(stack, redis_server, document)


async def test_a_run_end_is_appended_once_however_often_it_is_tried(
    stack: IngestStack, redis_server: PrivateRedis
) -> None:
    """A retried end (its first attempt timed out on a paused Redis, which runs it when it
    resumes) is appended once per run."""
    client = aioredis.from_url(redis_server.url)
    event = DocumentEvent(
        type=FeedEventType.DONE,
        document_id="d1",
        dataset_id="s1",
        document_name="mill.txt",
        run=Run.DONE,
        progress=1.0,
        progress_msg="Task done",
        chunk_count=3,
        token_count=30,
        process_duration=1.0,
        timestamp=0,
    )
    prefix = stack.settings.redis_prefix
    try:
        tries = [
            await publish_once(client, stack.settings, 7, event, ingest_end_key(prefix, "d1", run))
            for run in ("r1", "r1", "r1", "r2")
        ]
        assert tries == [True, False, False, True]
        assert await client.xlen(document_feed_key(prefix, 7)) == 2
    finally:
        await client.aclose()
