"""One user must not stall the others: real arq ingest workers, real uploads.

- Another user's small document finishes while one user's two large ones are still
  being embedded (the old worker held both its slots with them until they were done);
- a document past INGEST_MAX_CHUNKS fails with the reason, and its parse is bounded by a
  budget proportional to its size;
- the feed never goes quiet for more than ~2 s while a document is worked on, even when
  one embedding call takes 4 s, and carries chunks done/total with an ETA.
"""

from __future__ import annotations

import itertools
import json
import time

import httpx
import redis.asyncio as aioredis

from backend.constants import document_feed_key
from tests.support.accounts import Account, create_account
from tests.support.ingest_stack import IngestStack, account_fixtures, stack_fixture, wait_for_run
from tests.support.knowledge import MULTIPART, multipart

LINES = "\n".join(f"Line {n} tells of rivers, herons and otters." for n in range(200))


stack = stack_fixture(
    "fairness",
    # One embedding batch at a time, as with the local model: turns decide who is next.
    ingest_embedding_slots=1,
    ingest_max_chunks=300,
)


account, client = account_fixtures()


async def upload_and_parse(
    client: httpx.AsyncClient, files: list[tuple[str, bytes]], **dataset: object
) -> tuple[str, list[str]]:
    created = await client.post("/api/v1/datasets", json={"name": "kb", **dataset})
    assert created.status_code == 201, created.text
    dataset_id = created.json()["data"]["id"]
    uploaded = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart(files),
        headers={"Content-Type": MULTIPART},
    )
    assert uploaded.status_code == 201, uploaded.text
    ids = [document["id"] for document in uploaded.json()["data"]]
    started = await client.post(f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": ids})
    assert started.status_code == 200, started.text
    return dataset_id, ids


async def test_a_small_document_finishes_while_another_users_large_ones_embed(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    stack.embeddings.delay = 0.1
    try:
        big = LINES.encode()
        big_dataset, big_ids = await upload_and_parse(
            client, [("big-a.txt", big), ("big-b.txt", big)], parser_config={"chunk_token_num": 16}
        )
        for document_id in big_ids:  # both are past parsing, embedding
            await wait_for_run(client, big_dataset, document_id, ("RUNNING",), 30, 0.16)
        other = await create_account(stack.settings)
        async with stack.client(other) as theirs:
            small_dataset, [small] = await upload_and_parse(theirs, [("note.txt", b"Herons.")])
            begun = time.monotonic()
            done = await wait_for_run(theirs, small_dataset, small, within=30)
            waited = time.monotonic() - begun
        assert done["run"] == "DONE", done
        for document_id in big_ids:
            listed = await client.get(
                f"/api/v1/datasets/{big_dataset}/documents", params={"id": document_id}
            )
            big_document = listed.json()["data"]["docs"][0]
            assert big_document["run"] == "RUNNING" and big_document["progress"] < 0.95
        assert waited < 5, waited
    finally:
        stack.embeddings.delay = 0
        await client.request(
            "DELETE", f"/api/v1/datasets/{big_dataset}/chunks", json={"document_ids": big_ids}
        )


async def test_a_document_past_the_chunk_cap_fails_saying_so(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    many = "\n".join(f"Row {n} of the ledger." for n in range(400)).encode()
    dataset_id, [document_id] = await upload_and_parse(
        client, [("ledger.txt", many)], parser_config={"chunk_token_num": 8}
    )
    failed = await wait_for_run(client, dataset_id, document_id)
    assert failed["run"] == "FAIL"
    reason = failed["progress_msg"].rsplit("\n", 1)[-1]
    assert "more than the 300 allowed per document (INGEST_MAX_CHUNKS)" in reason, reason


async def feed_events(stack: IngestStack, user_id: int, document_id: str) -> list[dict]:
    redis = aioredis.from_url(stack.settings.redis_url)
    try:
        entries = await redis.xrange(document_feed_key(stack.settings.redis_prefix, user_id))
    finally:
        await redis.aclose()
    events = [{"type": f[b"type"].decode(), **json.loads(f[b"data"])} for _, f in entries]
    return [event for event in events if event["document_id"] == document_id]


async def test_the_feed_speaks_every_two_seconds_with_chunks_and_an_eta(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    stack.embeddings.delay = 4.0  # each embedding call takes 4 s
    try:
        text = "\n".join(f"Otters {n} swim in the cold river all winter." for n in range(3))
        dataset_id, [document_id] = await upload_and_parse(
            client, [("otters.txt", text.encode())], parser_config={"chunk_token_num": 12}
        )
        done = await wait_for_run(client, dataset_id, document_id, within=60)
    finally:
        stack.embeddings.delay = 0
    assert done["run"] == "DONE" and done["chunk_count"] >= 2
    events = await feed_events(stack, account.id, document_id)
    received = next(i for i, e in enumerate(events) if e["progress_msg"].endswith("received."))
    worked = events[received:]
    gaps = [(b["timestamp"] - a["timestamp"]) / 1000 for a, b in itertools.pairwise(worked)]
    assert max(gaps) <= 2.8, gaps
    embedding = [e for e in worked if e.get("chunks_total")]
    assert embedding and all(e["chunks_total"] == done["chunk_count"] for e in embedding)
    assert any(e["chunks_done"] >= 1 and e["eta_seconds"] is not None for e in embedding)
    assert [e["chunks_done"] for e in embedding] == sorted(e["chunks_done"] for e in embedding)
