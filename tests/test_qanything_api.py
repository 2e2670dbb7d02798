"""QAnything's RAG server façade (`/api/qanything/...`) over real sockets: the request
and response shapes of QAnything's server README and its error codes (2002 user_id
missing, 2005 user_id not the caller, 2003 knowledge base or file not found)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from quart import Quart

from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.ingest_stack import IngestStack, account_fixtures, ingest_stack
from tests.support.retrieval_corpus import Corpus, indexed_dataset

LAKES = {
    "lakes.txt": [
        "Lake Baikal is the deepest lake in the world.",
        "The lake freezes every winter and the ice is thick.",
    ],
    "bread.txt": ["Bread rises when yeast ferments the dough."],
}


@pytest.fixture(scope="module")
async def stack(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[IngestStack]:
    async with ingest_stack(settings, tmp_path_factory.mktemp("qany"), workers=0) as running:
        yield running


account, client = account_fixtures(password=False)


@pytest.fixture
async def lakes(stack: IngestStack, client: httpx.AsyncClient, account: Account) -> Corpus:
    return await indexed_dataset(client, stack.settings.search_db_file, account.id, LAKES)


async def qanything(client: httpx.AsyncClient, name: str, **body: Any) -> tuple[int, Any]:
    response = await client.post(f"/api/qanything/{name}", json=body)
    return response.status_code, response.json()


async def test_question_rag_search_returns_retrieval_documents(
    client: httpx.AsyncClient, account: Account, lakes: Corpus
) -> None:
    status, body = await qanything(
        client,
        "question_rag_search",
        user_id=str(account.id),
        kb_ids=[lakes.dataset_id],
        question="deepest lake",
    )
    assert status == 200, body
    assert (body["code"], body["msg"], body["question"]) == (200, "success", "deepest lake")
    first = body["retrieval_documents"][0]
    assert first["page_content"] == LAKES["lakes.txt"][0]
    meta = first["metadata"]
    assert (meta["kb_id"], meta["file_name"]) == (lakes.dataset_id, "lakes.txt")
    assert meta["file_id"] == lakes.documents["lakes.txt"]
    assert meta["chunk_id"] == lakes.chunks[first["page_content"]]
    assert meta["user_id"] == str(account.id) and meta["retrieval_query"] == "deepest lake"
    assert 0 < meta["score"] <= 1
    # The README's curl sends one kb_id; the username names the caller too.
    status, single = await qanything(
        client,
        "question_rag_search",
        user_id=account.username,
        kb_id=lakes.dataset_id,
        question="yeast",
        top_k=1,
    )
    assert status == 200, single
    assert [d["metadata"]["file_name"] for d in single["retrieval_documents"]] == ["bread.txt"]


async def test_user_id_missing_is_2002_and_someone_elses_is_2005(
    client: httpx.AsyncClient, account: Account, lakes: Corpus
) -> None:
    ask = {"kb_ids": [lakes.dataset_id], "question": "lake"}
    status, body = await qanything(client, "question_rag_search", **ask)
    assert (status, body["code"]) == (400, 2002) and body["msg"] == body["message"]
    status, body = await qanything(client, "question_rag_search", user_id="  ", **ask)
    assert (status, body["code"]) == (400, 2002)
    status, body = await qanything(client, "question_rag_search", user_id="zzp", **ask)
    assert (status, body["code"]) == (403, 2005) and "user_id" in body["msg"]


async def test_another_users_or_unknown_kb_is_2003(
    stack: IngestStack, lakes: Corpus, account: Account
) -> None:
    stranger = await create_account(stack.settings, password=False)
    async with stack.client(stranger) as http:
        for kb_id in (lakes.dataset_id, "0" * 32, "KB123456789"):
            for name, extra in (
                ("question_rag_search", {"kb_ids": [kb_id], "question": "lake"}),
                ("get_files_statu", {"kb_id": kb_id, "file_ids": [lakes.documents["lakes.txt"]]}),
                ("delete_knowledge_base", {"kb_id": kb_id}),
                ("upload_faqs", {"kb_id": kb_id, "faqs": [{"question": "q", "answer": "a"}]}),
            ):
                status, body = await qanything(http, name, user_id=str(stranger.id), **extra)
                assert (status, body["code"]) == (404, 2003), (name, kb_id, body)
    # Nothing of the owner's was touched.
    async with stack.client(account) as http:
        listed = await http.get(f"/api/v1/datasets/{lakes.dataset_id}/documents")
        assert listed.status_code == 200 and listed.json()["data"]["total"] == 2


async def test_upload_faqs_then_get_files_statu(
    client: httpx.AsyncClient, account: Account, lakes: Corpus
) -> None:
    faqs = [
        {"question": "How do I use python?", "answer": "Install it."},
        {"question": "How do I use docker?", "answer": "Run a container."},
    ]
    status, body = await qanything(
        client, "upload_faqs", user_id=str(account.id), kb_id=lakes.dataset_id, faqs=faqs
    )
    assert status == 200, body
    assert (body["code"], body["file_status"]) == (200, {})
    [entry] = body["data"]
    assert (entry["status"], entry["length"]) == ("gray", 2) and len(entry["timestamp"]) == 12
    lakes_id = lakes.documents["lakes.txt"]
    status, body = await qanything(
        client,
        "get_files_statu",
        user_id=str(account.id),
        kb_id=lakes.dataset_id,
        file_ids=[entry["file_id"], lakes_id],
    )
    assert status == 200, body
    assert (body["code"], body["msg"]) == (200, "success")
    details = body["data"]["details"]
    assert [d["file_id"] for d in details] == [entry["file_id"], lakes_id]
    assert details[0]["status"] == "gray" and details[1]["file_name"] == "lakes.txt"
    assert sum(body["data"]["total"].values()) == 2
    status, body = await qanything(
        client,
        "get_files_statu",
        user_id=str(account.id),
        kb_id=lakes.dataset_id,
        file_ids=["0" * 32],
    )
    assert (status, body["code"]) == (404, 2003)


async def test_delete_knowledge_base_files_then_the_whole_base(
    client: httpx.AsyncClient, account: Account, lakes: Corpus
) -> None:
    me = str(account.id)
    bread = lakes.documents["bread.txt"]
    status, body = await qanything(
        client, "delete_knowledge_base", user_id=me, kb_id=lakes.dataset_id, file_ids=[bread]
    )
    assert (status, body["code"]) == (200, 200), body
    listed = (await client.get(f"/api/v1/datasets/{lakes.dataset_id}/documents")).json()
    assert [d["name"] for d in listed["data"]["docs"]] == ["lakes.txt"]
    status, body = await qanything(
        client, "delete_knowledge_base", user_id=me, kb_id=lakes.dataset_id
    )
    assert (status, body) == (
        200,
        {"code": 200, "msg": f"Knowledge Base {lakes.dataset_id} delete success"},
    )
    assert (await client.get(f"/api/v1/datasets/{lakes.dataset_id}/documents")).status_code == 404
    status, body = await qanything(
        client, "delete_knowledge_base", user_id=me, kb_id=lakes.dataset_id
    )
    assert (status, body["code"]) == (404, 2003)


async def test_chunk_embedding_stores_exactly_the_chunks_given(
    stack: IngestStack, client: httpx.AsyncClient, account: Account, lakes: Corpus
) -> None:
    texts = ["Zanzibar cloves are harvested by hand.", "Kilimanjaro has three volcanic cones."]
    status, body = await qanything(
        client,
        "chunk_embedding",
        user_id=str(account.id),
        kb_id=lakes.dataset_id,
        file_id="ignored",
        file_name="africa.txt",
        chunk_datas=[*texts, texts[0]],
    )
    assert status == 200, body
    entry = body["data"]
    assert (body["code"], entry["file_name"], entry["status"]) == (200, "africa.txt", "green")
    assert entry["bytes"] == len("\n\n".join(texts).encode())
    chunks = await client.get(
        f"/api/v1/datasets/{lakes.dataset_id}/documents/{entry['file_id']}/chunks"
    )
    assert chunks.status_code == 200, chunks.text
    assert sorted(c["content"] for c in chunks.json()["data"]["chunks"]) == sorted(texts)
    status, found = await qanything(
        client,
        "question_rag_search",
        user_id=str(account.id),
        kb_ids=[lakes.dataset_id],
        question="Kilimanjaro volcanic",
    )
    # Searchable at once by its words (no ingest worker runs here to embed it, so
    # only the keyword leg finds it).
    by_content = {d["page_content"]: d["metadata"] for d in found["retrieval_documents"]}
    assert by_content[texts[1]]["file_id"] == entry["file_id"]
    assert texts[0] not in by_content
    stranger = await create_account(stack.settings, password=False)
    async with stack.client(stranger) as http:
        status, body = await qanything(
            http,
            "chunk_embedding",
            user_id=stranger.username,
            kb_id=lakes.dataset_id,
            chunk_datas=["x"],
        )
    assert (status, body["code"]) == (404, 2003)


async def parser_embedding(
    client: httpx.AsyncClient, fields: dict[str, str], names: list[str]
) -> tuple[int, Any]:
    files = [("files", (name, f"Text of {name}.".encode(), "text/plain")) for name in names]
    response = await client.post(
        "/api/qanything/document_parser_embedding", data=fields, files=files
    )
    return response.status_code, response.json()


async def test_document_parser_embedding_uploads_and_queues_with_soft_and_strong_mode(
    stack: IngestStack, client: httpx.AsyncClient, account: Account, lakes: Corpus
) -> None:
    fields = {"user_id": str(account.id), "kb_id": lakes.dataset_id}
    status, body = await parser_embedding(client, fields, ["a.txt", "b.txt"])
    assert status == 200, body
    assert [(d["file_name"], d["status"]) for d in body["data"]] == [
        ("a.txt", "gray"),
        ("b.txt", "gray"),
    ]
    assert body["code"] == 200 and body["skipped"] == []
    listed = (await client.get(f"/api/v1/datasets/{lakes.dataset_id}/documents")).json()
    runs = {d["name"]: d["run"] for d in listed["data"]["docs"]}
    assert runs["a.txt"] == runs["b.txt"] == "RUNNING"  # queued for the ingest worker
    status, body = await parser_embedding(client, {**fields, "mode": "soft"}, ["a.txt"])
    assert (status, body["data"], [s["name"] for s in body["skipped"]]) == (200, [], ["a.txt"])
    status, body = await parser_embedding(client, {**fields, "mode": "strong"}, ["a.txt"])
    assert status == 200 and [d["file_name"] for d in body["data"]] == ["a.txt"]
    # Refusals store nothing.
    before = (await client.get(f"/api/v1/datasets/{lakes.dataset_id}/documents")).json()
    status, body = await parser_embedding(client, {"kb_id": lakes.dataset_id}, ["c.txt"])
    assert (status, body["code"]) == (400, 2002)
    status, body = await parser_embedding(client, fields, [])  # sent url-encoded
    assert status == 415 and "multipart" in body["msg"]
    stranger = await create_account(stack.settings, password=False)
    async with stack.client(stranger) as http:
        mine = {"user_id": str(stranger.id), "kb_id": lakes.dataset_id}
        status, body = await parser_embedding(http, mine, ["c.txt"])
    assert (status, body["code"]) == (404, 2003)
    after = (await client.get(f"/api/v1/datasets/{lakes.dataset_id}/documents")).json()
    assert after["data"]["total"] == before["data"]["total"]
