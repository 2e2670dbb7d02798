"""Rerank providers against a local upstream speaking Cohere's v2 rerank and the common
`/v1/rerank` shape, RERANK_MODELS checked at start, and how a failing reranker degrades."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator

import pytest

from backend.errors import BadRequest
from backend.providers.base import ProviderError, ProviderErrorCode
from backend.providers.rerank import RerankConfigError, parse_rerank_entries
from backend.providers.rerank_cohere import CohereReranker
from backend.providers.rerank_http import HttpReranker
from backend.providers.rerank_registry import RerankRegistry
from backend.search.fusion import FusedHit
from backend.search.rerankers import rerank_hits
from backend.search.store import ChunkRecord
from backend.settings import Settings
from tests.support.fake_rerank import FakeRerankServer, fake_rerank_server

DOCUMENTS = ["the lake is frozen", "ice on the lake", "bread and butter"]

pytestmark = pytest.mark.sqlite_only


@pytest.fixture
async def upstream() -> AsyncIterator[FakeRerankServer]:
    async with fake_rerank_server(api_key="secret") as server:
        yield server


def cohere(upstream: FakeRerankServer, model: str, key: str = "secret", timeout: float = 5):
    return CohereReranker("r", model, upstream.cohere_base_url, key, timeout=timeout)


def http(upstream: FakeRerankServer, model: str, key: str = "secret", timeout: float = 5):
    return HttpReranker("r", model, upstream.http_base_url, key, timeout=timeout)


@pytest.mark.parametrize("build", [cohere, http])
async def test_scores_come_back_in_the_documents_order(upstream: FakeRerankServer, build) -> None:
    reranker = build(upstream, "prefer-ice")
    try:
        scores = await reranker.rerank("lake", DOCUMENTS)
    finally:
        await reranker.aclose()
    # The upstream answers best first; the provider puts each score back in its place.
    assert scores == [0.5, 0.9, 0.0]
    sent = upstream.stats.requests[-1].json()
    assert sent == {"model": "prefer-ice", "query": "lake", "documents": DOCUMENTS, "top_n": 3}


@pytest.mark.parametrize("build", [cohere, http])
@pytest.mark.parametrize(
    ("model", "code"),
    [
        ("fail-500", ProviderErrorCode.UNAVAILABLE),
        ("fail-429", ProviderErrorCode.RATE_LIMITED),
        ("fail-400", ProviderErrorCode.BAD_REQUEST),
        ("fail-malformed", ProviderErrorCode.MALFORMED),
        ("fail-hang", ProviderErrorCode.TIMEOUT),
    ],
)
async def test_upstream_failures_are_provider_errors(
    upstream: FakeRerankServer, build, model: str, code: ProviderErrorCode
) -> None:
    reranker = build(upstream, model, timeout=0.5)
    try:
        with pytest.raises(ProviderError) as caught:
            await reranker.rerank("lake", DOCUMENTS)
    finally:
        await reranker.aclose()
    assert caught.value.code is code
    assert "rerank model 'r'" in caught.value.message


@pytest.mark.parametrize("build", [cohere, http])
async def test_a_wrong_key_is_an_auth_error(upstream: FakeRerankServer, build) -> None:
    reranker = build(upstream, "prefer-ice", key="wrong")
    try:
        with pytest.raises(ProviderError) as caught:
            await reranker.rerank("lake", DOCUMENTS)
    finally:
        await reranker.aclose()
    assert caught.value.code is ProviderErrorCode.AUTH


def hits(count: int) -> list[FusedHit]:
    return [
        FusedHit(
            ChunkRecord(f"{i:032x}", "1", "d", "doc", "doc.txt", DOCUMENTS[i % 3]),
            similarity=1 - i / 10,
            vector_similarity=0.5,
            term_similarity=0.5,
        )
        for i in range(count)
    ]


async def test_reranked_hits_take_the_rerankers_score_and_order(
    upstream: FakeRerankServer,
) -> None:
    reranker = http(upstream, "prefer-ice")
    try:
        reranked = await rerank_hits(reranker, "lake", hits(3), 5)
    finally:
        await reranker.aclose()
    assert [(h.record.content, h.similarity) for h in reranked] == [
        ("ice on the lake", 0.9),
        ("the lake is frozen", 0.5),
        ("bread and butter", 0.0),
    ]
    assert all(h.vector_similarity == 0.5 for h in reranked)


@pytest.mark.parametrize("model", ["fail-500", "fail-malformed", "fail-hang"])
async def test_a_failing_or_slow_reranker_leaves_the_fused_order_and_warns(
    upstream: FakeRerankServer, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The provider's own timeout is long: the search's bound (0.5 s) must cut it short.
    reranker = cohere(upstream, model, timeout=30)
    fused = hits(3)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="sluice.retrieval"):
            result = await rerank_hits(reranker, "lake", fused, 0.5)
    finally:
        await reranker.aclose()
    assert time.monotonic() - started < 3
    assert result == fused
    assert "rerank model 'r' failed" in caplog.text


def entries(*items: dict) -> str:
    return json.dumps(list(items))


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("[", "not valid JSON"),
        ('{"id": "x"}', "must be a JSON list"),
        (entries({"id": "x", "provider": "http"}), "base_url is required"),
        (entries({"id": "x", "provider": "nope"}), "entry 0 ('x') is invalid"),
        (entries({"id": "x", "provider": "cohere"}), None),
        (
            entries({"id": "x", "provider": "cohere"}, {"id": "x", "provider": "cohere"}),
            "lists model id 'x' twice",
        ),
    ],
)
def test_rerank_models_are_checked_at_start(raw: str, complaint: str | None) -> None:
    if complaint is None:
        assert [e.id for e in parse_rerank_entries(raw)] == ["x"]
        Settings(_env_file=None, rerank_models=raw)
        return
    with pytest.raises(RerankConfigError, match=re.escape(complaint)):
        parse_rerank_entries(raw)
    with pytest.raises(ValueError, match=re.escape(complaint)):
        Settings(_env_file=None, rerank_models=raw)


def test_an_unknown_rerank_model_is_a_bad_request_naming_the_configured_ones() -> None:
    raw = entries({"id": "rerank-v3.5@cohere", "provider": "cohere", "upstream": "rerank-v3.5"})
    registry = RerankRegistry(Settings(_env_file=None, rerank_models=raw))
    assert registry.get("rerank-v3.5@cohere").model == "rerank-v3.5"
    with pytest.raises(BadRequest, match=re.escape("Available rerank models: rerank-v3.5@cohere")):
        registry.provider("other")
    with pytest.raises(BadRequest, match="none are configured"):
        RerankRegistry(Settings(_env_file=None)).provider("other")
