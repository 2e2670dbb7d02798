"""An ingest worker's SIGTERM hands its document back at a batch boundary (issue 18): before,
the job was cancelled mid-batch, the document left RUNNING without a lease, and the
sweeper of another worker took it for a dead worker's: one of its restarts spent,
"stopped unexpectedly" in its log, every batch embedded so far thrown away.

Real processes: a web process, ingest worker A embedding a document of about 20 batches
(the fake embedding upstream answers each after a delay), SIGTERM to A's process group
(its parse children too, as a service manager sends it), worker B started then (a rolling
restart). A exits by itself within the drain; B finishes the document: DONE with the
chunk count of an undisturbed run, each chunk embedded once (the batches A embedded are
kept), no restart counted, and the owner's status feed never says failed. The lease is
short (1.5 s) and the sweep runs every second, so a document left behind would be
restarted within the test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from backend.constants import ingest_restarts_key, ingest_resume_key
from backend.knowledge.parsing import run_parse_with_limits
from tests.support.accounts import Account
from tests.support.hostile_parsers import slow_parser
from tests.support.ingest_stack import (
    IngestStack,
    account_fixtures,
    stack_fixture,
    start_ingest_worker,
    wait_for_run,
)
from tests.support.knowledge import MULTIPART, multipart
from tests.support.live_server import ServerProcess
from tests.support.sse_client import Frame, frames

pytestmark = pytest.mark.sqlite_only

TEXT = "\n\n".join(f"Section {n}: the weir, the sluice gate and the mill race." for n in range(60))
DRAIN_SECONDS = 20
BATCH_DELAY_SECONDS = 0.3
HANDED_BACK = "is being stopped (a deploy or a restart); another worker carries on"

stack = stack_fixture(
    "ingest-drain",
    ingest_lease_seconds=1.5,
    ingest_sweep_interval_seconds=1,
    worker_drain_seconds=DRAIN_SECONDS,
)
account, client = account_fixtures()


async def upload(client: httpx.AsyncClient, dataset_id: str, name: str) -> str:
    response = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart([(name, TEXT.encode())]),
        headers={"Content-Type": MULTIPART},
    )
    assert response.status_code == 201, response.text
    return response.json()["data"][0]["id"]


async def parse(client: httpx.AsyncClient, dataset_id: str, document_id: str) -> None:
    response = await client.post(
        f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document_id]}
    )
    assert response.status_code == 200, response.text


@asynccontextmanager
async def feed(stack: IngestStack, account: Account) -> AsyncIterator[AsyncIterator[Frame]]:
    params = {"access_token": account.access_token}
    async with (
        httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http,
        http.stream("GET", "/api/v1/events", params=params) as response,
    ):
        assert response.status_code == 200
        yield frames(response)


async def events_until_done(stream: AsyncIterator[Frame], document_id: str) -> list[dict]:
    """The document's feed events up to its terminal one (done, failed or cancelled)."""
    received: list[dict] = []
    async with asyncio.timeout(90):
        async for frame in stream:
            if frame.event is None or frame.data["document_id"] != document_id:
                continue
            received.append({"event": frame.event, **frame.data})
            if frame.event != "document.progress":
                return received
    raise AssertionError(f"the feed ended early: {received}")


def embedded_inputs(stack: IngestStack, since: int) -> int:
    """Texts the fake embedding upstream was asked to embed in its requests from `since`."""
    requests = stack.upstream.stats.requests[since:]
    return sum(len(request.json()["input"]) for request in requests)


def exit_moment(worker: ServerProcess, within: float) -> tuple[int, float]:
    """(the worker's exit code, the monotonic time it was seen to exit): in a thread."""
    code = worker.process.wait(within)
    return code, time.monotonic()


async def sigterm_mid_embedding(
    stack: IngestStack, client: httpx.AsyncClient, account: Account, drain_seconds: int
) -> tuple[dict, list[dict], int, float, int]:
    """Parse a reference document undisturbed, then another whose worker gets SIGTERM
    mid-embedding while a new worker starts. (the document, its feed events, the
    reference's chunk count, seconds until the old worker exited, texts embedded)."""
    created = await client.post(
        "/api/v1/datasets", json={"name": "drain", "parser_config": {"chunk_token_num": 16}}
    )
    dataset_id = created.json()["data"]["id"]
    reference_id = await upload(client, dataset_id, "reference.txt")
    await parse(client, dataset_id, reference_id)
    reference = await wait_for_run(client, dataset_id, reference_id)
    assert reference["run"] == "DONE" and reference["chunk_count"] > 30, reference
    document_id = await upload(client, dataset_id, "mill.txt")
    if drain_seconds != DRAIN_SECONDS:  # the only worker: one run with that drain
        worker = await start_ingest_worker(
            stack.settings.model_copy(update={"worker_drain_seconds": drain_seconds}),
            stack.log_dir,
        )
        for other in stack.workers:
            other.stop()
        stack.workers.append(worker)
    [old] = [worker for worker in stack.workers if worker.process.poll() is None]
    requests_before = len(stack.upstream.stats.requests)
    stack.embeddings.delay = BATCH_DELAY_SECONDS
    try:
        async with feed(stack, account) as stream:
            await anext(stream)  # the opening frame
            await parse(client, dataset_id, document_id)
            await wait_for_run(client, dataset_id, document_id, ("RUNNING",), progress_above=0.3)
            old.signal(signal.SIGTERM)
            signalled = time.monotonic()
            exiting = asyncio.ensure_future(asyncio.to_thread(exit_moment, old, drain_seconds + 10))
            await stack.start_worker()  # the new replica of a rolling restart
            exit_code, exited = await exiting
            exited_after = exited - signalled
            assert exit_code == 0, old.log_tail()
            events = await events_until_done(stream, document_id)
    finally:
        stack.embeddings.delay = 0
    document = await wait_for_run(client, dataset_id, document_id)
    texts = embedded_inputs(stack, requests_before)
    return document, events, reference["chunk_count"], exited_after, texts


async def assert_no_restart_spent(stack: IngestStack, document: dict) -> None:
    assert document["run"] == "DONE", document["progress_msg"]
    assert "stopped unexpectedly" not in document["progress_msg"], document["progress_msg"]
    assert HANDED_BACK in document["progress_msg"], document["progress_msg"]
    redis = aioredis.from_url(stack.settings.redis_url)
    try:
        prefix = stack.settings.redis_prefix
        assert await redis.get(ingest_restarts_key(prefix, document["id"])) is None
        assert not await redis.exists(ingest_resume_key(prefix, document["id"]))
    finally:
        await redis.aclose()
    store = stack.store()
    try:
        assert await store.count_chunks(document["id"]) == document["chunk_count"]
    finally:
        await store.close()


async def test_sigterm_hands_the_document_back_at_a_batch_boundary_keeping_its_vectors(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    document, events, reference_chunks, exited_after, texts = await sigterm_mid_embedding(
        stack, client, account, DRAIN_SECONDS
    )
    print(f"\nSIGTERM mid-embedding: the old worker exited after {exited_after:.2f} s")
    await assert_no_restart_spent(stack, document)
    assert document["chunk_count"] == reference_chunks
    assert "chunks embedded are kept" in document["progress_msg"], document["progress_msg"]
    # Each chunk embedded once: the batches the old worker embedded were not redone.
    assert texts == document["chunk_count"], (texts, document["chunk_count"])
    # It stopped at the batch under way, not at the end of the document (about 20 batches).
    assert exited_after < DRAIN_SECONDS / 2
    kinds = [event["event"] for event in events]
    assert "document.failed" not in kinds and kinds[-1] == "document.done", kinds
    assert all(event["run"] in ("RUNNING", "DONE") for event in events), events
    assert any(HANDED_BACK in event["progress_msg"] for event in events), events
    assert events[-1]["chunk_count"] == reference_chunks


async def test_sigterm_without_drain_time_hands_the_document_back_from_the_start(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    """WORKER_DRAIN_SECONDS 0: the job is cancelled at once, mid-batch; the document is
    handed back all the same (no restart spent), its embedding done again."""
    document, events, reference_chunks, exited_after, texts = await sigterm_mid_embedding(
        stack, client, account, 0
    )
    await assert_no_restart_spent(stack, document)
    assert document["chunk_count"] == reference_chunks
    assert texts > document["chunk_count"]
    assert exited_after < DRAIN_SECONDS / 2
    assert "document.failed" not in [event["event"] for event in events], events


async def test_sigterm_mid_parse_hands_the_document_back_at_once(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    """A parse is not waited for (the next run parses again anyway): the worker stops it
    and exits, the document is handed back before any "Parsed" line, and a new worker
    parses and embeds it, no restart spent."""
    big = "\n\n".join(
        f"Section {n}: the weir, the sluice gate and the mill race, otters and herons."
        for n in range(20_000)
    )
    created = await client.post(
        "/api/v1/datasets", json={"name": "big", "parser_config": {"chunk_token_num": 2048}}
    )
    dataset_id = created.json()["data"]["id"]
    response = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart([("big.txt", big.encode())]),
        headers={"Content-Type": MULTIPART},
    )
    assert response.status_code == 201, response.text
    document_id = response.json()["data"][0]["id"]
    [old] = [worker for worker in stack.workers if worker.process.poll() is None]
    await parse(client, dataset_id, document_id)
    deadline = time.monotonic() + 30
    while not (await wait_for_run(client, dataset_id, document_id, ("RUNNING",)))[
        "process_begin_at"
    ]:
        assert time.monotonic() < deadline, "the parse never started"
        await asyncio.sleep(0.05)
    old.signal(signal.SIGTERM)
    assert await asyncio.to_thread(old.process.wait, DRAIN_SECONDS + 10) == 0, old.log_tail()
    await stack.start_worker()
    document = await wait_for_run(client, dataset_id, document_id, within=90)
    await assert_no_restart_spent(stack, document)
    log = document["progress_msg"]
    assert "Parsed" not in log.split(HANDED_BACK)[0], log
    assert log.count("Parsed") == 1 and document["chunk_count"] > 100, log


async def test_a_parse_child_outlives_a_sigterm_to_the_process_group(tmp_path: Path) -> None:
    """A service manager's SIGTERM reaches the parse child too: the parse must end (the
    drain's boundary), not crash and fail the document ("exit signal 15")."""
    path = tmp_path / "mill.txt"
    path.write_text(TEXT)
    parsing = asyncio.ensure_future(
        asyncio.to_thread(run_parse_with_limits, path, "txt", target=slow_parser)
    )
    started = tmp_path / "started"
    deadline = time.monotonic() + 20
    while not started.exists() or not started.read_text():
        assert time.monotonic() < deadline, "the parse child never started"
        await asyncio.sleep(0.05)
    os.kill(int(started.read_text()), signal.SIGTERM)
    parsed = await parsing
    assert "Section 59: the weir" in parsed.sections[-1].text
