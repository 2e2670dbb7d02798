"""Parsing documents end to end over real sockets: Hypercorn, an arq ingest worker
process, Redis, the SQL database and the shared embedded search store.

Upload -> POST /chunks -> the worker parses, chunks, embeds (the fake embedding
upstream) and indexes -> DONE with chunks listed and searchable; each kind of bad file
ends FAIL with its reason while the worker keeps serving the queue; re-parsing
replaces chunks; stopping mid-parse (CANCEL) and deleting mid-parse leave no chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from quart import Quart

from backend.search.analyzer import query_terms
from backend.search.store import SearchFilter
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.document_files import (
    docx_file,
    encrypted_office,
    image_only_pdf,
    pdf_file,
    zip_bomb_docx,
)
from tests.support.ingest_stack import (
    BROKEN_MODEL,
    IngestStack,
    account_fixtures,
    ingest_stack,
    wait_for_run,
)
from tests.support.knowledge import MULTIPART, multipart


@pytest.fixture(scope="module")
async def stack(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[IngestStack]:
    async with ingest_stack(settings, tmp_path_factory.mktemp("ingestion-live")) as running:
        yield running


account, client = account_fixtures()


async def new_dataset(client: httpx.AsyncClient, **fields) -> str:
    response = await client.post("/api/v1/datasets", json={"name": "kb", **fields})
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


async def upload(
    client: httpx.AsyncClient, dataset_id: str, files: list[tuple[str, bytes]]
) -> list[dict]:
    response = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart(files),
        headers={"Content-Type": MULTIPART},
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def parse(client: httpx.AsyncClient, dataset_id: str, ids: list[str]) -> httpx.Response:
    return await client.post(f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": ids})


async def parsed(
    client: httpx.AsyncClient, dataset_id: str, files: list[tuple[str, bytes]]
) -> list[dict]:
    """Upload, parse and wait for every file to finish."""
    documents = await upload(client, dataset_id, files)
    response = await parse(client, dataset_id, [d["id"] for d in documents])
    assert response.status_code == 200, response.text
    return [await wait_for_run(client, dataset_id, d["id"]) for d in documents]


async def chunks_of(client: httpx.AsyncClient, dataset_id: str, document_id: str, **params) -> dict:
    response = await client.get(
        f"/api/v1/datasets/{dataset_id}/documents/{document_id}/chunks", params=params
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


TEXT = "\n\n".join(
    f"Paragraph {n} is about the {topic} and its habits in the spring."
    for n, topic in enumerate(["heron", "otter", "beaver", "kingfisher", "salmon"] * 8)
)


async def test_an_uploaded_file_is_parsed_chunked_embedded_and_searchable(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    dataset_id = await new_dataset(client, parser_config={"chunk_token_num": 64})
    [document] = await parsed(client, dataset_id, [("river.txt", TEXT.encode())])

    assert document["run"] == "DONE", document["progress_msg"]
    assert document["progress"] == 1.0
    assert document["chunk_count"] > 3
    assert document["token_count"] > 0
    assert document["process_begin_at"] and document["process_duration"] > 0
    log = [line[9:] for line in document["progress_msg"].split("\n")]
    assert log[0] == "Task is queued."
    assert log[1] == "Task has been received."
    assert log[2].startswith("Parsed ") and log[3].startswith("Cut into ")
    assert any(line.startswith("Embedded ") for line in log)
    assert log[-1].startswith(f"Indexed {document['chunk_count']} chunks")

    listed = await chunks_of(client, dataset_id, document["id"], page_size=100)
    assert listed["total"] == document["chunk_count"] == len(listed["chunks"])
    assert listed["doc"]["id"] == document["id"] and listed["doc"]["run"] == "DONE"
    assert all(chunk["embedded"] and chunk["available"] for chunk in listed["chunks"])
    assert sum(c["token_count"] for c in listed["chunks"]) == document["token_count"]
    assert "".join(c["content"] for c in listed["chunks"]).count("Paragraph") == 40
    otters = await chunks_of(client, dataset_id, document["id"], keywords="otter")
    assert 0 < otters["total"] < listed["total"]
    assert all("otter" in chunk["content"] for chunk in otters["chunks"])

    store = stack.store()
    try:
        tenant = SearchFilter(tenant_id=str(account.id), dataset_ids=[dataset_id])
        hits = await store.keyword_search(query_terms("kingfisher habits"), tenant, 5)
        assert hits and all(hit.record.document_id == document["id"] for hit in hits)
        assert "kingfisher" in hits[0].record.content
        stranger = SearchFilter(tenant_id="0", dataset_ids=[dataset_id])
        assert await store.keyword_search(query_terms("kingfisher"), stranger, 5) == []
    finally:
        await store.close()

    datasets = await client.get("/api/v1/datasets", params={"id": dataset_id})
    [totals] = datasets.json()["data"]
    assert totals["chunk_count"] == document["chunk_count"]
    assert totals["token_num"] == document["token_count"]
    assert totals["done_count"] == 1


async def test_reparsing_replaces_the_chunks_with_the_same_ones(
    client: httpx.AsyncClient,
) -> None:
    dataset_id = await new_dataset(client, parser_config={"chunk_token_num": 64})
    [first] = await parsed(client, dataset_id, [("river.txt", TEXT.encode())])
    before = await chunks_of(client, dataset_id, first["id"], page_size=100)
    assert (await parse(client, dataset_id, [first["id"]])).status_code == 200
    again = await wait_for_run(client, dataset_id, first["id"])
    after = await chunks_of(client, dataset_id, first["id"], page_size=100)
    assert again["run"] == "DONE" and again["chunk_count"] == first["chunk_count"]
    assert [c["id"] for c in after["chunks"]] == [c["id"] for c in before["chunks"]]


async def test_every_kind_of_bad_file_ends_fail_with_its_reason(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    dataset_id = await new_dataset(client)
    plain = docx_file(tmp_path / "plain.docx", [("p", "Hello there")])
    bad = {
        "damaged.pdf": b"%PDF-1.7\n" + b"\x00garbage" * 50,
        "empty.txt": b"   \n\n  ",
        "scan.pdf": image_only_pdf(tmp_path / "scan.pdf").read_bytes(),
        "locked.pdf": pdf_file(tmp_path / "l.pdf", [["secret"]], password="pw").read_bytes(),
        "locked.docx": encrypted_office(tmp_path / "locked.docx", plain).read_bytes(),
        "bomb.docx": zip_bomb_docx(tmp_path / "bomb.docx", inflated_mb=200).read_bytes(),
    }
    documents = await upload(client, dataset_id, list(bad.items()))
    good = await upload(client, dataset_id, [("fine.txt", b"A good file after the bad ones.")])
    ids = [d["id"] for d in documents + good]
    assert (await parse(client, dataset_id, ids)).status_code == 200

    ended = {d["name"]: await wait_for_run(client, dataset_id, d["id"]) for d in documents}
    for name, document in ended.items():
        assert document["run"] == "FAIL", (name, document["progress_msg"])
        assert document["chunk_count"] == 0
        reason = document["progress_msg"].rsplit("\n", 1)[-1][9:]
        assert len(reason) > 20, (name, reason)
    assert "no text" in ended["empty.txt"]["progress_msg"].lower()
    assert "password" in ended["locked.pdf"]["progress_msg"].lower()
    assert "image" in ended["scan.pdf"]["progress_msg"].lower()
    # The worker kept serving the queue.
    fine = await wait_for_run(client, dataset_id, good[0]["id"])
    assert fine["run"] == "DONE" and fine["chunk_count"] == 1


async def test_an_embedding_provider_failure_ends_fail_with_its_reason(
    client: httpx.AsyncClient,
) -> None:
    dataset_id = await new_dataset(client, embedding_model=BROKEN_MODEL)
    [document] = await parsed(client, dataset_id, [("a.txt", b"Some text to embed.")])
    assert document["run"] == "FAIL" and document["chunk_count"] == 0
    reason = document["progress_msg"].rsplit("\n", 1)[-1]
    assert "Embedding failed:" in reason and BROKEN_MODEL in reason, reason


async def test_parse_requests_are_checked(stack: IngestStack, client: httpx.AsyncClient) -> None:
    dataset_id = await new_dataset(client)
    [document] = await upload(client, dataset_id, [("a.txt", b"some text")])
    unknown = "0" * 32
    response = await parse(client, dataset_id, [document["id"], unknown])
    assert response.status_code == 404 and unknown in response.json()["message"]
    listed = await wait_for_run(client, dataset_id, document["id"], runs=("UNSTART",))
    assert listed["run"] == "UNSTART"  # all or nothing
    assert (await parse(client, dataset_id, [])).status_code == 422
    stop = await client.request(
        "DELETE", f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document["id"]]}
    )
    assert stop.status_code == 409 and "Not being parsed" in stop.json()["message"]

    stranger = await create_account(stack.settings)
    async with stack.client(stranger) as other:
        assert (await parse(other, dataset_id, [document["id"]])).status_code == 404
        own = await new_dataset(other)
        assert (await parse(other, own, [document["id"]])).status_code == 404


async def slow_document(client: httpx.AsyncClient, stack: IngestStack) -> tuple[str, str]:
    """A document of many chunks, being embedded slowly: (dataset id, document id)."""
    dataset_id = await new_dataset(client, parser_config={"chunk_token_num": 16})
    [document] = await upload(client, dataset_id, [("slow.txt", TEXT.encode())])
    stack.embeddings.delay = 0.5
    assert (await parse(client, dataset_id, [document["id"]])).status_code == 200
    await wait_for_run(client, dataset_id, document["id"], runs=("RUNNING",), progress_above=0.2)
    return dataset_id, document["id"]


async def test_stopping_mid_parse_cancels_at_once_and_leaves_no_chunks(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    try:
        dataset_id, document_id = await slow_document(client, stack)
        response = await client.request(
            "DELETE", f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document_id]}
        )
        assert response.status_code == 200, response.text
        stopped = await wait_for_run(client, dataset_id, document_id, runs=("CANCEL",), within=1)
        assert stopped["progress_msg"].endswith("Parsing was cancelled.")
        # The job noticed within its poll (0.2 s) and stopped embedding: no more requests
        # reach the upstream, though dozens of batches (0.5 s each) were left.
        await asyncio.sleep(1.0)
        requests = stack.embedding_requests
        await asyncio.sleep(1.5)
        assert stack.embedding_requests == requests
        after = await wait_for_run(client, dataset_id, document_id, runs=("CANCEL",))
        assert after["chunk_count"] == 0
        assert (await chunks_of(client, dataset_id, document_id))["total"] == 0
    finally:
        stack.embeddings.delay = 0


async def test_deleting_a_document_mid_parse_stops_its_job_and_keeps_no_chunks(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    try:
        dataset_id, document_id = await slow_document(client, stack)
        response = await client.request(
            "DELETE", f"/api/v1/datasets/{dataset_id}/documents", json={"ids": [document_id]}
        )
        assert response.status_code == 200
        stack.embeddings.delay = 0
        await asyncio.sleep(1.5)
        store = stack.store()
        try:
            assert await store.count_chunks(document_id) == 0
        finally:
            await store.close()
    finally:
        stack.embeddings.delay = 0
