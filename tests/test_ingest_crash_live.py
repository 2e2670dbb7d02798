"""Crash safety of parsing over real processes: an ingest worker killed with SIGKILL
mid-document, a job delivered twice, a job lost from Redis.

The stack's lease is short (INGEST_LEASE_SECONDS 1.5) and its sweep frequent (every
second), so recovery is quick enough to test; production uses the same code with
longer times.
"""

from __future__ import annotations

import asyncio

import httpx

from backend.connections import redis_pool
from backend.job_queue import enqueue
from backend.knowledge import document_runs
from backend.knowledge.parse_queue import PARSE_DOCUMENT_JOB, enqueue_parse, ingest_queue
from backend.models import Document
from tests.support.ingest_stack import IngestStack, account_fixtures, stack_fixture, wait_for_run
from tests.support.knowledge import MULTIPART, multipart

TEXT = "\n\n".join(f"Section {n}: the weir, the sluice gate and the mill race." for n in range(60))


stack = stack_fixture(
    "ingest-crash",
    ingest_lease_seconds=1.5,
    ingest_sweep_interval_seconds=1,
    ingest_max_restarts=1,
    ingest_queued_timeout_seconds=1.0,
)


account, client = account_fixtures()


async def uploaded(
    client: httpx.AsyncClient, name: str = "mill.txt", dataset_id: str | None = None
) -> tuple[str, str]:
    if dataset_id is None:
        created = await client.post(
            "/api/v1/datasets", json={"name": name, "parser_config": {"chunk_token_num": 16}}
        )
        dataset_id = created.json()["data"]["id"]
    response = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart([(name, TEXT.encode())]),
        headers={"Content-Type": MULTIPART},
    )
    return dataset_id, response.json()["data"][0]["id"]


async def parse(client: httpx.AsyncClient, dataset_id: str, document_id: str) -> None:
    response = await client.post(
        f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document_id]}
    )
    assert response.status_code == 200, response.text


async def chunk_contents(client: httpx.AsyncClient, dataset_id: str, document_id: str) -> list[str]:
    response = await client.get(
        f"/api/v1/datasets/{dataset_id}/documents/{document_id}/chunks",
        params={"page_size": 1000},
    )
    return [chunk["content"] for chunk in response.json()["data"]["chunks"]]


async def kill_mid_document(
    stack: IngestStack,
    client: httpx.AsyncClient,
    dataset_id: str,
    document_id: str,
    restarts: int = 0,
) -> None:
    """Wait until the document's run after `restarts` restarts is being embedded, then
    SIGKILL every ingest worker."""
    stack.embeddings.delay = 0.5
    for _ in range(300):
        document = await wait_for_run(
            client, dataset_id, document_id, runs=("RUNNING",), progress_above=0.2
        )
        if document["progress_msg"].count("stopped unexpectedly") == restarts:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"never reached restart {restarts}: {document['progress_msg']}")
    for worker in stack.workers:
        if worker.process.poll() is None:
            stack.kill(worker)


async def test_a_document_whose_worker_was_killed_is_parsed_again_once(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    dataset_id, reference_id = await uploaded(client, "reference.txt")
    await parse(client, dataset_id, reference_id)
    reference = await wait_for_run(client, dataset_id, reference_id)
    _, document_id = await uploaded(client, dataset_id=dataset_id)
    await parse(client, dataset_id, document_id)
    try:
        await kill_mid_document(stack, client, dataset_id, document_id)
        await asyncio.sleep(2)  # the dead worker's lease expires; nobody sweeps yet
        assert await wait_for_run(client, dataset_id, document_id, runs=("RUNNING",))
        stack.embeddings.delay = 0
        await stack.start_worker()
        document = await wait_for_run(client, dataset_id, document_id, within=30)
    finally:
        stack.embeddings.delay = 0
        if not any(worker.process.poll() is None for worker in stack.workers):
            await stack.start_worker()
    assert document["run"] == "DONE", document["progress_msg"]
    assert "stopped unexpectedly; parsing it again (restart 1 of 1)" in document["progress_msg"]
    contents = await chunk_contents(client, dataset_id, document_id)
    assert len(contents) == len(set(contents)) == document["chunk_count"]
    assert document["chunk_count"] == reference["chunk_count"]
    store = stack.store()
    try:
        assert await store.count_chunks(document_id) == document["chunk_count"]
    finally:
        await store.close()


async def test_a_document_that_keeps_killing_its_worker_ends_fail(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    dataset_id, document_id = await uploaded(client)
    await parse(client, dataset_id, document_id)
    try:
        for restarts in range(2):
            await kill_mid_document(stack, client, dataset_id, document_id, restarts)
            await stack.start_worker()
        document = await wait_for_run(client, dataset_id, document_id, within=30)
    finally:
        stack.embeddings.delay = 0
    assert document["run"] == "FAIL"
    assert document["progress_msg"].endswith(
        "The worker parsing this document stopped unexpectedly twice: the file may be too "
        "large or damaged for this server. Try again, or split it"
    )
    assert document["chunk_count"] == 0


async def test_a_job_delivered_twice_indexes_one_copy(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    dataset_id, document_id = await uploaded(client)
    row = await Document.get(id=document_id)
    run_id = (await document_runs.queue_for_parsing([row]))[document_id]
    redis = redis_pool(stack.settings)
    try:
        stack.embeddings.delay = 0.1
        # The same run twice at once (two job ids, so arq runs both), then once more late.
        await enqueue_parse(redis, stack.settings, document_id, run_id)
        await enqueue(redis, ingest_queue(stack.settings), PARSE_DOCUMENT_JOB, document_id, run_id)
        document = await wait_for_run(client, dataset_id, document_id)
        stack.embeddings.delay = 0
        late = await enqueue(
            redis, ingest_queue(stack.settings), PARSE_DOCUMENT_JOB, document_id, run_id
        )
        for _ in range(100):
            if await redis.zscore(ingest_queue(stack.settings), late.job_id) is None:
                break
            await asyncio.sleep(0.1)
        # The late delivery found the run finished and changed nothing.
        after = await wait_for_run(client, dataset_id, document_id)
        assert after["progress_msg"] == document["progress_msg"]
        assert after["process_begin_at"] == document["process_begin_at"]
    finally:
        stack.embeddings.delay = 0
        await redis.aclose()
    assert document["run"] == "DONE"
    contents = await chunk_contents(client, dataset_id, document_id)
    assert len(contents) == len(set(contents)) == document["chunk_count"]
    store = stack.store()
    try:
        assert await store.count_chunks(document_id) == document["chunk_count"]
    finally:
        await store.close()


async def test_a_lost_job_is_enqueued_again(stack: IngestStack, client: httpx.AsyncClient) -> None:
    """Queued (RUNNING, not started) with no job in Redis, as after a lost enqueue."""
    dataset_id, document_id = await uploaded(client)
    row = await Document.get(id=document_id)
    await document_runs.queue_for_parsing([row])
    document = await wait_for_run(client, dataset_id, document_id, within=20)
    assert document["run"] == "DONE" and document["chunk_count"] > 0
