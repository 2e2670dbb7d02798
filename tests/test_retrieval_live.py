"""`POST /api/v1/retrieval` over real sockets: a live web process searching chunks the
test indexed into its search store, the question embedded by a fake OpenAI-compatible
upstream (a hashed bag of words) and reranked by fake Cohere and `/v1/rerank` upstreams
that speak the real APIs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from quart import Quart

from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.fake_rerank import PREFERRED, FakeRerankServer, fake_rerank_server
from tests.support.ingest_stack import IngestStack, account_fixtures, ingest_stack
from tests.support.retrieval_corpus import Corpus, indexed_dataset

RERANK_TOP_N = 4
RERANK_TIMEOUT = 1.0
UNKNOWN = "0" * 32

LAKES = {
    "lakes.txt": [
        "Lake Baikal is the deepest lake in the world.",
        "The lake freezes every winter and the ice is thick.",
        "Fishing on the lake is popular in summer.",
    ],
    "rivers.txt": [
        "The Volga river flows into the Caspian Sea.",
        "A river delta forms where the river meets the sea near a lake.",
    ],
    "other.txt": ["Bread rises when yeast ferments the dough."],
}


def rerank_models(upstream: FakeRerankServer) -> str:
    entries: list[dict[str, Any]] = [
        {"id": "cohere-prefers-ice", "provider": "cohere", "upstream": "prefer-ice",
         "base_url": upstream.cohere_base_url, "api_key": "co-key"},
        {"id": "http-prefers-ice", "provider": "http", "upstream": "prefer-ice",
         "base_url": upstream.http_base_url},
        {"id": "broken", "provider": "http", "upstream": "fail-500",
         "base_url": upstream.http_base_url},
        {"id": "malformed", "provider": "cohere", "upstream": "fail-malformed",
         "base_url": upstream.cohere_base_url, "api_key": "co-key"},
        {"id": "hanging", "provider": "http", "upstream": "fail-hang",
         "base_url": upstream.http_base_url},
    ]  # fmt: skip
    return json.dumps(entries)


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[FakeRerankServer]:
    async with fake_rerank_server() as server:
        yield server


@pytest.fixture(scope="module")
async def stack(
    app: Quart,
    settings: Settings,
    upstream: FakeRerankServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[IngestStack]:
    async with ingest_stack(
        settings,
        tmp_path_factory.mktemp("retrieval-live"),
        workers=0,
        rerank_models=rerank_models(upstream),
        rerank_top_n=RERANK_TOP_N,
        rerank_timeout_seconds=RERANK_TIMEOUT,
    ) as running:
        yield running


account, client = account_fixtures(password=False)


@pytest.fixture
async def lakes(stack: IngestStack, client: httpx.AsyncClient, account: Account) -> Corpus:
    return await indexed_dataset(client, stack.settings.search_db_file, account.id, LAKES)


async def search(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/retrieval", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def refused(client: httpx.AsyncClient, status: int, **body: Any) -> str:
    response = await client.post("/api/v1/retrieval", json=body)
    payload = response.json()
    assert (response.status_code, payload["code"]) == (status, status), payload
    return payload["message"]


def contents(found: dict[str, Any]) -> list[str]:
    return [chunk["content"] for chunk in found["chunks"]]


async def test_chunks_come_back_fused_and_ranked_in_ragflows_shape(
    client: httpx.AsyncClient, lakes: Corpus
) -> None:
    found = await search(client, question="deepest lake", dataset_ids=[lakes.dataset_id])
    first = found["chunks"][0]
    assert first["content"] == LAKES["lakes.txt"][0]
    assert first["id"] == lakes.chunks[first["content"]]
    assert first["document_id"] == lakes.documents["lakes.txt"]
    assert (first["document_keyword"], first["dataset_id"]) == ("lakes.txt", lakes.dataset_id)
    assert first["document_name"] == "lakes.txt"
    assert (first["important_keywords"], first["positions"]) == (["kw"], [[1, 0, 10, 0, 10]])
    assert first["highlight"] is None
    similarities = [chunk["similarity"] for chunk in found["chunks"]]
    assert similarities == sorted(similarities, reverse=True)
    for chunk in found["chunks"]:
        assert 0 <= chunk["vector_similarity"] <= 1 and 0 <= chunk["term_similarity"] <= 1
        assert chunk["similarity"] >= 0.2
    assert first["term_similarity"] == 1.0
    assert found["total"] == len(found["chunks"])
    # Every chunk naming a lake is found; the bread chunk shares no word.
    assert {c for c in contents(found) if "lake" in c.lower()} == {
        c for texts in LAKES.values() for c in texts if "lake" in c.lower()
    }


async def test_doc_aggs_count_every_chunk_found_per_document(
    client: httpx.AsyncClient, lakes: Corpus
) -> None:
    found = await search(
        client, question="lake", dataset_ids=[lakes.dataset_id], similarity_threshold=0
    )
    counted: dict[str, int] = {}
    for chunk in found["chunks"]:
        counted[chunk["document_id"]] = counted.get(chunk["document_id"], 0) + 1
    aggs = found["doc_aggs"]
    assert {a["doc_id"]: a["count"] for a in aggs} == counted
    assert [a["count"] for a in aggs] == sorted(counted.values(), reverse=True)
    names = {a["doc_id"]: a["doc_name"] for a in aggs}
    assert names[lakes.documents["lakes.txt"]] == "lakes.txt"
    # A document renamed after indexing is shown by its new name.
    lakes_id = lakes.documents["lakes.txt"]
    path = f"/api/v1/datasets/{lakes.dataset_id}/documents/{lakes_id}"
    assert (await client.put(path, json={"name": "renamed.txt"})).status_code == 200
    again = await search(client, question="deepest", dataset_ids=[lakes.dataset_id])
    assert again["chunks"][0]["document_keyword"] == "renamed.txt"
    renamed = next(a for a in again["doc_aggs"] if a["doc_id"] == lakes_id)
    assert renamed["doc_name"] == "renamed.txt"


async def test_the_threshold_applies_to_the_fused_similarity(
    client: httpx.AsyncClient, lakes: Corpus
) -> None:
    body = {"question": "lake winter ice", "dataset_ids": [lakes.dataset_id]}
    everything = await search(client, **body, similarity_threshold=0)
    assert everything["total"] == 6  # the bread chunk too, by its vector's common part
    cut = sorted(c["similarity"] for c in everything["chunks"])[3]
    kept = await search(client, **body, similarity_threshold=cut)
    assert kept["total"] == 3
    assert contents(kept) == [c["content"] for c in everything["chunks"] if c["similarity"] >= cut]
    assert (await search(client, **body, similarity_threshold=1))["chunks"] == []


async def test_pages_slice_one_ranking(client: httpx.AsyncClient, lakes: Corpus) -> None:
    body = {"question": "lake river sea", "dataset_ids": [lakes.dataset_id]}
    whole = await search(client, **body, similarity_threshold=0, page_size=100)
    pages = [
        await search(client, **body, similarity_threshold=0, page=page, page_size=2)
        for page in (1, 2, 3, 4)
    ]
    assert [len(p["chunks"]) for p in pages] == [2, 2, 2, 0]
    assert [c for p in pages for c in contents(p)] == contents(whole)
    assert {p["total"] for p in pages} == {whole["total"]} == {6}
    assert all(p["doc_aggs"] == whole["doc_aggs"] for p in pages)


async def test_highlight_marks_the_questions_words(
    client: httpx.AsyncClient, lakes: Corpus
) -> None:
    found = await search(
        client, question="Deepest LAKE?", dataset_ids=[lakes.dataset_id], highlight=True
    )
    marked = {c["content"]: c["highlight"] for c in found["chunks"]}
    assert marked[LAKES["lakes.txt"][0]] == (
        "<em>Lake</em> Baikal is the <em>deepest</em> <em>lake</em> in the world."
    )
    assert marked[LAKES["lakes.txt"][1]] == (
        "The <em>lake</em> freezes every winter and the ice is thick."
    )


async def test_keyword_keeps_only_chunks_sharing_a_word(
    client: httpx.AsyncClient, lakes: Corpus
) -> None:
    body = {"question": "dough lake", "dataset_ids": [lakes.dataset_id], "similarity_threshold": 0}
    hybrid = await search(client, **body)
    keyword = await search(client, **body, keyword=True)
    assert any(c["term_similarity"] == 0 for c in hybrid["chunks"])
    assert all(c["term_similarity"] > 0 for c in keyword["chunks"])
    assert contents(keyword) == [c["content"] for c in hybrid["chunks"] if c["term_similarity"]]


async def test_documents_narrow_the_search_and_disabled_ones_are_left_out(
    client: httpx.AsyncClient, lakes: Corpus
) -> None:
    rivers = lakes.documents["rivers.txt"]
    body = {"question": "lake river", "similarity_threshold": 0}
    only = await search(client, **body, dataset_ids=[lakes.dataset_id], document_ids=[rivers])
    assert {c["document_id"] for c in only["chunks"]} == {rivers}
    # Documents alone name their datasets.
    assert contents(await search(client, **body, document_ids=[rivers])) == contents(only)
    path = f"/api/v1/datasets/{lakes.dataset_id}/documents/{rivers}"
    assert (await client.put(path, json={"enabled": 0})).status_code == 200
    found = await search(client, **body, dataset_ids=[lakes.dataset_id])
    assert found["total"] > 0 and rivers not in {c["document_id"] for c in found["chunks"]}
    named = await search(client, **body, dataset_ids=[lakes.dataset_id], document_ids=[rivers])
    assert named["total"] == 0


async def test_users_find_only_their_own_chunks(
    stack: IngestStack, client: httpx.AsyncClient, account: Account, lakes: Corpus
) -> None:
    other = await create_account(stack.settings, password=False)
    async with stack.client(other) as other_client:
        theirs = await indexed_dataset(other_client, stack.settings.search_db_file, other.id, LAKES)
        their_found = await search(
            other_client, question="deepest lake", dataset_ids=[theirs.dataset_id]
        )
        assert {c["dataset_id"] for c in their_found["chunks"]} == {theirs.dataset_id}
        assert set(contents(their_found)) <= set(theirs.chunks)
        their_document = theirs.documents["lakes.txt"]
        for body in (
            {"dataset_ids": [lakes.dataset_id]},
            {"dataset_ids": [theirs.dataset_id, lakes.dataset_id]},
            {"document_ids": [lakes.documents["lakes.txt"]]},
        ):
            message = await refused(other_client, 404, question="lake", **body)
            assert "not found" in message
    mine = await search(client, question="deepest lake", dataset_ids=[lakes.dataset_id])
    assert {c["id"] for c in mine["chunks"]} <= set(lakes.chunks.values())
    for body in (
        {"dataset_ids": [theirs.dataset_id]},
        {"dataset_ids": [lakes.dataset_id], "document_ids": [their_document]},
        {"document_ids": [their_document]},
        {"dataset_ids": [UNKNOWN]},
    ):
        await refused(client, 404, question="lake", **body)


async def test_datasets_with_different_embedding_models_are_not_searched_together(
    stack: IngestStack, client: httpx.AsyncClient, account: Account, lakes: Corpus
) -> None:
    local = await indexed_dataset(
        client,
        stack.settings.search_db_file,
        account.id,
        {"local.txt": ["A lake."]},
        embed=lambda texts: None,
        embedding_model="multilingual-e5-small@local",
    )
    message = await refused(
        client, 400, question="lake", dataset_ids=[lakes.dataset_id, local.dataset_id]
    )
    assert "same embedding model" in message and "multilingual-e5-small@local" in message


async def test_bad_requests_are_refused_with_the_reason(
    client: httpx.AsyncClient, lakes: Corpus
) -> None:
    ids = [lakes.dataset_id]
    assert "rerank model 'nope'" in await refused(
        client, 400, question="lake", dataset_ids=ids, rerank_id="nope"
    )
    await refused(client, 422, question="lake")
    await refused(client, 422, question="lake", dataset_ids=["not-an-id"])
    await refused(client, 422, question="lake", dataset_ids=ids, use_kg=True)
    await refused(client, 422, question="lake", dataset_ids=ids, top_k=0)
    await refused(client, 422, question="lake", dataset_ids=ids * 2)
    empty = await search(client, question="  ", dataset_ids=ids)
    assert empty == {"chunks": [], "doc_aggs": [], "total": 0}


@pytest.mark.parametrize("rerank_id", ["cohere-prefers-ice", "http-prefers-ice"])
async def test_a_reranker_reorders_the_top_candidates_and_its_score_is_the_similarity(
    client: httpx.AsyncClient, lakes: Corpus, rerank_id: str
) -> None:
    body = {"question": "lake", "dataset_ids": [lakes.dataset_id], "similarity_threshold": 0}
    fused = await search(client, **body)
    top = contents(fused)[:RERANK_TOP_N]
    ice = LAKES["lakes.txt"][1]
    assert ice in top and top[0] != ice
    reranked = await search(client, **body, rerank_id=rerank_id)
    assert reranked["total"] == RERANK_TOP_N
    assert set(contents(reranked)) == set(top)
    first = reranked["chunks"][0]
    assert (first["content"], first["similarity"]) == (ice, PREFERRED)
    fused_by_id = {c["id"]: c for c in fused["chunks"]}
    for chunk in reranked["chunks"][1:]:
        assert chunk["similarity"] == 0.5  # the fake's half score: every one has "lake"
        assert chunk["vector_similarity"] == fused_by_id[chunk["id"]]["vector_similarity"]


@pytest.mark.parametrize("rerank_id", ["broken", "malformed", "hanging"])
async def test_a_failing_reranker_leaves_the_fused_order(
    stack: IngestStack, client: httpx.AsyncClient, lakes: Corpus, rerank_id: str
) -> None:
    body = {"question": "lake", "dataset_ids": [lakes.dataset_id], "similarity_threshold": 0}
    fused = await search(client, **body)
    started = time.monotonic()
    degraded = await search(client, **body, rerank_id=rerank_id)
    assert time.monotonic() - started < RERANK_TIMEOUT + 2
    assert degraded["chunks"] == fused["chunks"][:RERANK_TOP_N]
    assert degraded["total"] == RERANK_TOP_N
    log = stack.server.server.log_tail(200)
    assert f"rerank model '{rerank_id}' failed" in log
