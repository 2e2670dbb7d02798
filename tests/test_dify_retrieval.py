"""Dify's external knowledge API (`POST /api/v1/dify/retrieval`) over real sockets: a
live web process searching chunks indexed into its store, called the way Dify calls it
(an `sk-` API key as bearer, `knowledge_id` = a dataset id), with Dify's error codes."""

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

PATH = "/api/v1/dify/retrieval"
LAKES = {
    "lakes.txt": [
        "Lake Baikal is the deepest lake in the world.",
        "The lake freezes every winter and the ice is thick.",
        "Fishing on the lake is popular in summer.",
    ],
    "bread.txt": ["Bread rises when yeast ferments the dough."],
}


@pytest.fixture(scope="module")
async def stack(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[IngestStack]:
    async with ingest_stack(settings, tmp_path_factory.mktemp("dify"), workers=0) as running:
        yield running


account, client = account_fixtures(password=False)


@pytest.fixture
async def lakes(stack: IngestStack, client: httpx.AsyncClient, account: Account) -> Corpus:
    return await indexed_dataset(client, stack.settings.search_db_file, account.id, LAKES)


@pytest.fixture
async def api_key(client: httpx.AsyncClient) -> str:
    created = await client.post("/api/v1/users/me/api-keys", json={"name": "dify"})
    assert created.status_code == 201, created.text
    return created.json()["data"]["key"]


async def dify(
    stack: IngestStack, authorization: str | None, **body: Any
) -> tuple[int, dict[str, Any]]:
    """A call as Dify makes it: only the key it was configured with, no session token."""
    headers = {} if authorization is None else {"Authorization": authorization}
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        response = await http.post(PATH, json=body, headers=headers)
    return response.status_code, response.json()


def question(knowledge_id: str, query: str, top_k: int = 5, threshold: float = 0.0) -> dict:
    return {
        "knowledge_id": knowledge_id,
        "query": query,
        "retrieval_setting": {"top_k": top_k, "score_threshold": threshold},
    }


async def test_records_come_back_in_difys_shape_best_first(
    stack: IngestStack, lakes: Corpus, api_key: str
) -> None:
    status, body = await dify(
        stack, f"Bearer {api_key}", **question(lakes.dataset_id, "deepest lake")
    )
    assert status == 200, body
    records = body["records"]
    first = records[0]
    assert first["content"] == LAKES["lakes.txt"][0]
    assert first["title"] == "lakes.txt"
    assert first["metadata"]["document_id"] == lakes.documents["lakes.txt"]
    assert first["metadata"]["dataset_id"] == lakes.dataset_id
    assert first["metadata"]["chunk_id"] == lakes.chunks[first["content"]]
    scores = [r["score"] for r in records]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


async def test_top_k_and_score_threshold_limit_the_records(
    stack: IngestStack, lakes: Corpus, api_key: str
) -> None:
    auth = f"Bearer {api_key}"
    _, everything = await dify(stack, auth, **question(lakes.dataset_id, "lake", top_k=50))
    assert len(everything["records"]) >= 3
    _, two = await dify(stack, auth, **question(lakes.dataset_id, "lake", top_k=2))
    assert [r["content"] for r in two["records"]] == [
        r["content"] for r in everything["records"][:2]
    ]
    cut = everything["records"][1]["score"]
    _, above = await dify(stack, auth, **question(lakes.dataset_id, "lake", 50, cut))
    assert above["records"] and all(r["score"] >= cut for r in above["records"])
    assert len(above["records"]) < len(everything["records"])
    _, none = await dify(stack, auth, **question(lakes.dataset_id, "", top_k=5))
    assert none == {"records": []}
    _, bread = await dify(stack, auth, **question(lakes.dataset_id, "yeast dough", top_k=1))
    assert [(r["title"], r["content"]) for r in bread["records"]] == [
        ("bread.txt", LAKES["bread.txt"][0])
    ]


@pytest.mark.parametrize(
    ("authorization", "error_code"),
    [(None, 1001), ("Token abc", 1001), ("Bearer", 1001), ("Bearer sk-not-a-key", 1002)],
)
async def test_bad_credentials_carry_difys_auth_codes(
    stack: IngestStack, lakes: Corpus, authorization: str | None, error_code: int
) -> None:
    status, body = await dify(stack, authorization, **question(lakes.dataset_id, "lake"))
    assert (status, body["code"], body["error_code"]) == (401, 401, error_code)
    assert body["error_msg"] == body["message"] and body["message"]


async def test_a_revoked_key_is_authorization_failed(
    stack: IngestStack, client: httpx.AsyncClient, lakes: Corpus, api_key: str
) -> None:
    keys = (await client.get("/api/v1/users/me/api-keys")).json()["data"]
    assert (await client.delete(f"/api/v1/users/me/api-keys/{keys[0]['id']}")).status_code == 200
    status, body = await dify(stack, f"Bearer {api_key}", **question(lakes.dataset_id, "lake"))
    assert (status, body["error_code"]) == (401, 1002)


async def test_unknown_malformed_or_another_users_knowledge_is_2001(
    stack: IngestStack, lakes: Corpus
) -> None:
    stranger = await create_account(stack.settings, password=False)
    async with stack.client(stranger) as http:
        created = await http.post("/api/v1/users/me/api-keys", json={"name": "dify"})
    auth = f"Bearer {created.json()['data']['key']}"
    for knowledge_id in (lakes.dataset_id, "0" * 32, "AAA-BBB-CCC"):
        status, body = await dify(stack, auth, **question(knowledge_id, "deepest lake"))
        assert (status, body["code"], body["error_code"]) == (404, 404, 2001), body
        assert "does not exist" in body["error_msg"] or "not found" in body["error_msg"]


async def test_bad_bodies_are_4xx_with_the_envelope_and_an_error_code(
    stack: IngestStack, lakes: Corpus, api_key: str
) -> None:
    auth = f"Bearer {api_key}"
    missing = {"knowledge_id": lakes.dataset_id, "query": "lake"}
    status, body = await dify(stack, auth, **missing)
    assert (status, body["error_code"]) == (422, 422) and "retrieval_setting" in body["message"]
    filtered = {
        **question(lakes.dataset_id, "lake"),
        "metadata_condition": {"conditions": [{"name": ["category"], "comparison_operator": "is"}]},
    }
    status, body = await dify(stack, auth, **filtered)
    assert status == 422 and "metadata_condition" in body["message"]
    unfiltered = {**question(lakes.dataset_id, "lake"), "metadata_condition": {"conditions": []}}
    status, body = await dify(stack, auth, **unfiltered)
    assert status == 200 and body["records"]
