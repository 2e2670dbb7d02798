"""A document's chunks by hand and FAQ imports, over real sockets with an ingest worker
embedding them (RAGFlow's /documents/{doc_id}/chunks routes, QAnything's upload_faqs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from quart import Quart

from backend.search.analyzer import query_terms
from backend.search.store import SearchFilter
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.fake_embeddings import fake_vector
from tests.support.ingest_stack import IngestStack, account_fixtures, ingest_stack, wait_for_run
from tests.support.knowledge import MULTIPART, multipart

UNKNOWN = "0" * 32


@pytest.fixture(scope="module")
async def stack(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[IngestStack]:
    async with ingest_stack(
        settings, tmp_path_factory.mktemp("chunks-live"), chunk_embed_wait_seconds=2.0
    ) as running:
        yield running


account, client = account_fixtures()


async def document(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """A dataset with one parsed document: (dataset id, document id, chunks path)."""
    created = await client.post("/api/v1/datasets", json={"name": "kb"})
    dataset_id = created.json()["data"]["id"]
    uploaded = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart([("base.txt", b"The base document about lakes.")]),
        headers={"Content-Type": MULTIPART},
    )
    document_id = uploaded.json()["data"][0]["id"]
    await client.post(f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document_id]})
    assert (await wait_for_run(client, dataset_id, document_id))["run"] == "DONE"
    return dataset_id, document_id, f"/api/v1/datasets/{dataset_id}/documents/{document_id}/chunks"


def unit(text: str) -> np.ndarray:
    vector = np.asarray(fake_vector(text, 8), dtype=np.float32)
    return vector / np.linalg.norm(vector)


async def test_a_chunk_added_by_hand_is_embedded_and_searchable_at_once(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    dataset_id, document_id, path = await document(client)
    body = {
        "content": "Opening hours: nine to five on weekdays.",
        "important_keywords": ["hours"],
        "questions": ["When is the office open?"],
        "tag_kwd": [],
    }
    response = await client.post(path, json=body)
    assert response.status_code == 201, response.text
    chunk = response.json()["data"]["chunk"]
    assert chunk["embedded"] is True and len(chunk["id"]) == 32
    assert (chunk["content"], chunk["questions"]) == (body["content"], body["questions"])
    assert chunk["document_id"] == document_id and chunk["dataset_id"] == dataset_id
    again = await client.post(path, json=body)
    assert again.json()["data"]["chunk"]["id"] == chunk["id"]  # the same text, one chunk

    listed = (await client.get(path)).json()["data"]
    assert listed["total"] == 2 and listed["doc"]["chunk_count"] == 2
    store = stack.store()
    try:
        tenant = SearchFilter(tenant_id=str(account.id), dataset_ids=[dataset_id])
        [hit] = await store.keyword_search(query_terms("office open"), tenant, 5)
        assert hit.record.chunk_id == chunk["id"]
        # Embedded by its question: the question's vector finds it first.
        nearest = await store.vector_search(unit("When is the office open?"), tenant, 1)
        assert nearest[0].record.chunk_id == chunk["id"]
        assert nearest[0].score == pytest.approx(1.0, abs=1e-5)
    finally:
        await store.close()


async def test_a_chunk_is_edited_hidden_and_deleted(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    dataset_id, document_id, path = await document(client)
    added = await client.post(path, json={"content": "Boats may be rented at the pier."})
    chunk_id = added.json()["data"]["chunk"]["id"]
    tokens_before = (await client.get(path)).json()["data"]["doc"]["token_count"]

    edited = await client.put(
        f"{path}/{chunk_id}", json={"content": "Canoes and kayaks may be rented at the pier."}
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["data"]["embedded"] is True
    store = stack.store()
    try:
        record = await store.get_chunk(chunk_id, document_id)
        assert record is not None and "kayaks" in record.content
        expected = unit("Canoes and kayaks may be rented at the pier.")
        assert np.allclose(record.vector, expected, atol=1e-5)
        hidden = await client.patch(f"{path}/{chunk_id}", json={"available": False})
        assert hidden.json()["data"]["available"] is False
        tenant = SearchFilter(tenant_id=str(account.id), dataset_ids=[dataset_id])
        assert await store.keyword_search(query_terms("kayaks"), tenant, 5) == []
    finally:
        await store.close()
    doc = (await client.get(path)).json()["data"]["doc"]
    assert doc["token_count"] > tokens_before  # the longer content counted

    one = await client.get(f"{path}/{chunk_id}")
    assert one.status_code == 200 and one.json()["data"]["available"] is False
    missing = await client.request("DELETE", path, json={"chunk_ids": [chunk_id, UNKNOWN]})
    assert missing.status_code == 404 and UNKNOWN in missing.json()["message"]
    assert (await client.get(f"{path}/{chunk_id}")).status_code == 200  # all or nothing
    for nothing in ({}, {"chunk_ids": None}, {"delete_all": 0}, {"delete_all": "true"}):
        refused = await client.request("DELETE", path, json=nothing)
        assert refused.status_code == 422 and "delete_all" in refused.json()["message"]
    assert (await client.get(path)).json()["data"]["total"] == 2
    gone = await client.request("DELETE", path, json={"chunk_ids": [chunk_id]})
    assert gone.status_code == 200
    assert (await client.get(f"{path}/{chunk_id}")).status_code == 404
    assert (await client.get(path)).json()["data"]["doc"]["chunk_count"] == 1
    cleared = await client.request("DELETE", path, json={"delete_all": True})
    assert cleared.status_code == 200
    after = (await client.get(path)).json()["data"]
    assert after["total"] == 0 and after["doc"]["chunk_count"] == after["doc"]["token_count"] == 0


async def test_listing_filters_and_pages_as_ragflow_clients_ask(client: httpx.AsyncClient) -> None:
    _, _, path = await document(client)
    ids = []
    for n in range(5):
        added = await client.post(
            path, json={"content": f"Note {n} about {'owls' if n % 2 else 'bats'}."}
        )
        ids.append(added.json()["data"]["chunk"]["id"])
    # RAGFlow's SDK sends empty keywords and id when it has none.
    page = await client.get(path, params={"keywords": "", "id": "", "page": 2, "page_size": 2})
    assert page.status_code == 200, page.text
    assert page.json()["data"]["total"] == 6
    assert [c["id"] for c in page.json()["data"]["chunks"]] == ids[1:3]
    owls = (await client.get(path, params={"keywords": "owls"})).json()["data"]
    assert owls["total"] == 2 and all("owls" in c["content"] for c in owls["chunks"])
    one = (await client.get(path, params={"id": ids[4]})).json()["data"]
    assert [c["id"] for c in one["chunks"]] == [ids[4]] and one["total"] == 1
    assert (await client.get(path, params={"id": UNKNOWN})).status_code == 404
    assert (await client.get(path, params={"id": "not-an-id"})).status_code == 422
    assert (await client.get(f"{path}/{UNKNOWN}")).status_code == 404


async def test_bad_chunk_requests_get_clear_errors(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    dataset_id, document_id, path = await document(client)
    for body in (
        {"content": "  "},
        {"content": "x", "tag_kwd": ["a"]},
        {"content": "x", "nope": 1},
    ):
        response = await client.post(path, json=body)
        assert response.status_code == 422, body
        assert response.json()["message"]
    # A document being parsed refuses edits: its run will replace every chunk.
    stack.embeddings.delay = 1.0
    try:
        await client.post(
            f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document_id]}
        )
        busy = await client.post(path, json={"content": "Too early."})
        assert busy.status_code == 409 and "being parsed" in busy.json()["message"]
    finally:
        stack.embeddings.delay = 0
    await wait_for_run(client, dataset_id, document_id)


async def test_a_chunk_waits_a_bounded_time_for_its_vector(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    _, _, path = await document(client)
    stack.embeddings.delay = 3.0
    try:
        added = await client.post(path, json={"content": "Slow to embed."})
    finally:
        stack.embeddings.delay = 0
    chunk = added.json()["data"]["chunk"]
    assert added.status_code == 201 and chunk["embedded"] is False
    # Searchable by its words already; the vector follows.
    assert (await client.get(path, params={"keywords": "slow"})).json()["data"]["total"] == 1
    for _ in range(50):
        if (await client.get(f"{path}/{chunk['id']}")).json()["data"]["embedded"]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the chunk was never embedded")


async def test_another_users_chunks_are_404_everywhere(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    dataset_id, _, path = await document(client)
    chunk_id = (await client.post(path, json={"content": "Private."})).json()["data"]["chunk"]["id"]
    stranger = await create_account(stack.settings)
    async with stack.client(stranger) as other:
        calls = [
            ("GET", path, None),
            ("POST", path, {"content": "mine now"}),
            ("DELETE", path, {"chunk_ids": [chunk_id]}),
            ("GET", f"{path}/{chunk_id}", None),
            ("PUT", f"{path}/{chunk_id}", {"content": "changed"}),
            ("PATCH", f"{path}/{chunk_id}", {"available": False}),
            (
                "POST",
                f"/api/v1/datasets/{dataset_id}/faqs",
                {"faqs": [{"question": "q", "answer": "a"}]},
            ),
        ]
        for method, url, body in calls:
            response = await other.request(method, url, json=body)
            assert response.status_code == 404, (method, url, response.text)
    assert (await client.get(f"{path}/{chunk_id}")).json()["data"]["content"] == "Private."


async def test_faqs_become_chunks_of_an_faq_document_matched_on_the_question(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    created = await client.post("/api/v1/datasets", json={"name": "faq"})
    dataset_id = created.json()["data"]["id"]
    faqs = [
        {"question": "How do I reset my password?", "answer": "Use the link on the login page."},
        {"question": "Where is the invoice?", "answer": "Under Billing, then Invoices."},
        {"question": "how do I reset my password? ", "answer": "Ask an administrator."},
    ]
    response = await client.post(f"/api/v1/datasets/{dataset_id}/faqs", json={"faqs": faqs})
    assert response.status_code == 201, response.text
    imported = response.json()["data"]
    assert imported["pairs"] == 2
    faq = imported["document"]
    assert faq["chunk_method"] == "qa" and faq["run"] == "RUNNING" and faq["name"].startswith("FAQ")
    done = await wait_for_run(client, dataset_id, faq["id"])
    assert done["run"] == "DONE" and done["chunk_count"] == 2
    path = f"/api/v1/datasets/{dataset_id}/documents/{faq['id']}/chunks"
    chunks = (await client.get(path)).json()["data"]["chunks"]
    assert [c["questions"] for c in chunks] == [
        ["how do I reset my password?"],
        ["Where is the invoice?"],
    ]
    assert chunks[0]["content"] == "Q: how do I reset my password?\nA: Ask an administrator."
    store = stack.store()
    try:
        tenant = SearchFilter(tenant_id=str(account.id), dataset_ids=[dataset_id])
        nearest = await store.vector_search(unit("Where is the invoice?"), tenant, 1)
        assert nearest[0].record.chunk_id == chunks[1]["id"]
    finally:
        await store.close()

    too_many = [{"question": f"q{n}", "answer": "a"} for n in range(1001)]
    over = await client.post(f"/api/v1/datasets/{dataset_id}/faqs", json={"faqs": too_many})
    assert over.status_code == 422
    empty = await client.post(f"/api/v1/datasets/{dataset_id}/faqs", json={"faqs": []})
    assert empty.status_code == 422
