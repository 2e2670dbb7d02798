"""The OpenAI-compatible and Cohere embedding providers against fake upstreams speaking
the real APIs, over real sockets: shapes, order, batching, input types, dimensions and
every failure as an actionable ProviderError."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from backend.providers.base import ProviderError, ProviderErrorCode
from backend.providers.embedding_cohere import CohereEmbeddingProvider
from backend.providers.embedding_openai import OpenAIEmbeddingProvider
from backend.providers.embeddings import EmbeddingProvider, EmbeddingProviderKind, EmbeddingSpec
from tests.support.fake_embeddings import (
    DIMENSION,
    FakeEmbeddingServer,
    fake_embedding_server,
    fake_vector,
)
from tests.support.fake_http import RETRY_AFTER_SECONDS
from tests.support.live_server import free_port

TIMEOUT = 0.5
KINDS = ["openai", "cohere"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmbeddingServer]:
    async with fake_embedding_server(api_key="emb-key") as server:
        yield server


ProviderFactory = Callable[..., EmbeddingProvider]


@pytest.fixture
async def make(fake: FakeEmbeddingServer) -> AsyncIterator[ProviderFactory]:
    built: list[EmbeddingProvider] = []

    def factory(
        kind: str,
        upstream: str = "embed-model",
        dimension: int = DIMENSION,
        send_dimension: bool = False,
        api_key: str = "emb-key",
        base_url: str | None = None,
    ) -> EmbeddingProvider:
        spec = EmbeddingSpec(
            id=f"{upstream}@{kind}",
            provider=EmbeddingProviderKind(kind),
            upstream=upstream,
            dimension=dimension,
            send_dimension=send_dimension,
        )
        provider: EmbeddingProvider
        if kind == "openai":
            provider = OpenAIEmbeddingProvider(
                spec, base_url or fake.openai_base_url, api_key, timeout=TIMEOUT
            )
        else:
            provider = CohereEmbeddingProvider(
                spec, base_url or fake.cohere_base_url, api_key, timeout=TIMEOUT
            )
        built.append(provider)
        return provider

    yield factory
    for provider in built:
        await provider.aclose()


def expected_rows(texts: list[str], dimension: int = DIMENSION) -> np.ndarray:
    rows = np.array([fake_vector(text or " ", dimension) for text in texts], dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", KINDS)
async def test_documents_come_back_as_unit_float32_rows_in_input_order(
    make: ProviderFactory, kind: str
) -> None:
    texts = ["the cat sat", "a dog barked loudly", "北京 首都", "the cat sat again"]
    rows = await make(kind).embed_documents(texts)
    assert rows.dtype == np.float32 and rows.shape == (4, DIMENSION)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
    assert np.allclose(rows, expected_rows(texts), atol=1e-6)
    query = await make(kind).embed_query("the cat")
    assert query.shape == (DIMENSION,) and query.dtype == np.float32
    assert np.allclose(query, expected_rows(["the cat"])[0], atol=1e-6)


@pytest.mark.parametrize(("kind", "count", "requests"), [("openai", 300, 2), ("cohere", 200, 3)])
async def test_large_inputs_are_split_under_the_api_limit(
    make: ProviderFactory, fake: FakeEmbeddingServer, kind: str, count: int, requests: int
) -> None:
    texts = [f"text number {i} word{i % 7}" for i in range(count)]
    rows = await make(kind).embed_documents(texts)
    assert len(fake.stats.requests) == requests
    assert np.allclose(rows, expected_rows(texts), atol=1e-6)
    assert (await make(kind).embed_documents([])).shape == (0, DIMENSION)


async def test_cohere_marks_documents_and_queries(
    make: ProviderFactory, fake: FakeEmbeddingServer
) -> None:
    provider = make("cohere", upstream="embed-v4.0")
    await provider.embed_documents(["a chunk"])
    await provider.embed_query("a question")
    bodies = [request.json() for request in fake.stats.requests]
    assert [b["input_type"] for b in bodies] == ["search_document", "search_query"]
    assert all(b["embedding_types"] == ["float"] and b["model"] == "embed-v4.0" for b in bodies)
    assert all("output_dimension" not in b for b in bodies)
    assert all(r.path == "/v2/embed" for r in fake.stats.requests)


async def test_openai_asks_for_floats_and_sends_no_empty_input(
    make: ProviderFactory, fake: FakeEmbeddingServer
) -> None:
    rows = await make("openai").embed_documents(["", "words"])
    body = fake.stats.requests[-1].json()
    assert body["encoding_format"] == "float" and body["input"] == [" ", "words"]
    assert "dimensions" not in body
    assert rows.shape == (2, DIMENSION)


@pytest.mark.parametrize(
    ("kind", "field"), [("openai", "dimensions"), ("cohere", "output_dimension")]
)
async def test_the_dimension_is_requested_when_the_entry_says_so(
    make: ProviderFactory, fake: FakeEmbeddingServer, kind: str, field: str
) -> None:
    rows = await make(kind, dimension=4, send_dimension=True).embed_documents(["a b c"])
    assert fake.stats.requests[-1].json()[field] == 4
    assert rows.shape == (1, 4)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_dimension_other_than_configured_is_an_operator_error(
    make: ProviderFactory, kind: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        await make(kind, upstream="wrong-dim").embed_documents(["x"])
    assert caught.value.code is ProviderErrorCode.MALFORMED
    assert f"{DIMENSION - 1}-dimensional" in caught.value.message
    assert "EMBEDDING_MODELS" in caught.value.message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("mode", "code", "retryable"),
    [
        ("401", ProviderErrorCode.AUTH, False),
        ("400", ProviderErrorCode.BAD_REQUEST, False),
        ("429", ProviderErrorCode.RATE_LIMITED, True),
        ("500", ProviderErrorCode.UNAVAILABLE, True),
        ("hang", ProviderErrorCode.TIMEOUT, True),
        ("malformed", ProviderErrorCode.MALFORMED, True),
    ],
)
async def test_upstream_failures_become_provider_errors(
    make: ProviderFactory, kind: str, mode: str, code: ProviderErrorCode, retryable: bool
) -> None:
    provider = make(kind, upstream=f"fail-{mode}")
    with pytest.raises(ProviderError) as caught:
        await provider.embed_documents(["some text"])
    assert caught.value.code is code
    assert caught.value.retryable is retryable
    assert "embedding model 'fail-" in caught.value.message
    if mode == "429":
        assert caught.value.retry_after == RETRY_AFTER_SECONDS
    if mode == "401":
        key = "OPENAI_API_KEY" if kind == "openai" else "COHERE_API_KEY"
        assert key in caught.value.message


@pytest.mark.parametrize("kind", KINDS)
async def test_a_wrong_key_names_the_setting_to_fix(make: ProviderFactory, kind: str) -> None:
    with pytest.raises(ProviderError) as caught:
        await make(kind, api_key="wrong").embed_query("q")
    assert caught.value.code is ProviderErrorCode.AUTH


@pytest.mark.parametrize("kind", KINDS)
async def test_an_unreachable_upstream_is_unavailable(make: ProviderFactory, kind: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}" + ("/v1" if kind == "openai" else "")
    with pytest.raises(ProviderError) as caught:
        await make(kind, base_url=base).embed_query("q")
    assert caught.value.code is ProviderErrorCode.UNAVAILABLE
