"""The two search stores side by side: one corpus, the same queries, compared directly
(the contract suite checks each store against expectations; this checks them against
each other). Keyword leg: the same chunks in the same order with the same BM25. Vector
leg: the same chunks with the same cosine within float32 rounding. Needs the Elasticsearch
node `make test` starts (skipped with the reason otherwise)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.search.analyzer import query_terms
from backend.search.store import ScoredChunk, SearchStore
from tests.support.parity_corpus import ParityCorpus, parity_corpus
from tests.support.search_stores import open_store

TOP_K = 10


@pytest.fixture
async def both_stores(
    tmp_path: Path, elasticsearch_url: str
) -> AsyncIterator[tuple[SearchStore, SearchStore, ParityCorpus]]:
    corpus = parity_corpus()
    async with (
        open_store("embedded", tmp_path) as embedded,
        open_store("elasticsearch", tmp_path, elasticsearch_url) as elastic,
    ):
        for store in (embedded, elastic):
            for document_id, records in corpus.documents.items():
                await store.replace_document(document_id, records)
        yield embedded, elastic, corpus


def ranked(hits: list[ScoredChunk]) -> list[str]:
    return [hit.record.chunk_id for hit in hits]


async def test_keyword_leg_ranks_identically_one_term_at_a_time(
    both_stores: tuple[SearchStore, SearchStore, ParityCorpus],
) -> None:
    """Every word of the queries alone: the same chunks, in the same order, with the
    same scores (the embedded store computes Lucene's BM25: backend/search/lucene_bm25.py)."""
    embedded, elastic, corpus = both_stores
    words = sorted({t for q in corpus.keyword_queries for t in query_terms(q)})
    for word in words:
        for filter in corpus.filters:
            mine = await embedded.keyword_search([word], filter, 100)
            theirs = await elastic.keyword_search([word], filter, 100)
            assert ranked(mine) == ranked(theirs), (word, filter)
            assert [t.score for t in theirs] == pytest.approx([m.score for m in mine], rel=1e-6)


async def test_keyword_leg_ranks_identically_with_several_terms(
    both_stores: tuple[SearchStore, SearchStore, ParityCorpus],
) -> None:
    """Whole questions: both stores match the same terms (term_statistics' rule, each
    counting from its own index) and score them alike, so the rankings are identical."""
    embedded, elastic, corpus = both_stores
    for question in corpus.keyword_queries:
        for filter in corpus.filters:
            terms = query_terms(question)
            mine = await embedded.keyword_search(terms, filter, 200)
            theirs = await elastic.keyword_search(terms, filter, 200)
            assert ranked(mine) == ranked(theirs), (question, filter)
            assert [t.score for t in theirs] == pytest.approx([m.score for m in mine], rel=1e-6)


async def test_vector_leg_matches_within_float_rounding(
    both_stores: tuple[SearchStore, SearchStore, ParityCorpus],
) -> None:
    embedded, elastic, corpus = both_stores
    for vector in corpus.query_vectors:
        for filter in corpus.filters:
            mine = await embedded.vector_search(vector, filter, TOP_K)
            theirs = await elastic.vector_search(vector, filter, TOP_K)
            assert ranked(mine) == ranked(theirs)
            assert [h.score for h in theirs] == pytest.approx([h.score for h in mine], abs=1e-6)
            assert mine, filter


async def test_both_legs_in_one_call_match_the_legs_alone(
    both_stores: tuple[SearchStore, SearchStore, ParityCorpus],
) -> None:
    embedded, elastic, corpus = both_stores
    filter = corpus.filters[0]
    vector_legs = []
    for store in (embedded, elastic):
        for question, vector in zip(corpus.keyword_queries, corpus.query_vectors, strict=False):
            terms = query_terms(question)
            by_keyword, by_vector = await store.search_legs(terms, vector, filter, TOP_K)
            assert ranked(by_keyword) == ranked(await store.keyword_search(terms, filter, TOP_K))
            assert ranked(by_vector) == ranked(await store.vector_search(vector, filter, TOP_K))
            vector_legs.append(ranked(by_vector))
    half = len(vector_legs) // 2
    assert vector_legs[:half] == vector_legs[half:]
