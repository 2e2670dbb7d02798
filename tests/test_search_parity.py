"""The two search stores side by side: one corpus, the same queries, compared directly
(the contract suite checks each store against expectations; this checks them against
each other). Keyword leg: the same chunks in the same order. Vector leg: the same chunks
with the same cosine within float32 rounding. Needs the Elasticsearch node `make test`
starts (skipped with the reason otherwise)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.search.analyzer import analyze, query_terms
from backend.search.store import ScoredChunk, SearchStore
from tests.support.parity_corpus import ParityCorpus, parity_corpus
from tests.support.search_stores import open_store

TOP_K = 10
# The largest relative score gap (embedded store) between two chunks the stores order
# differently, measured on this corpus.
MAX_SWAP_GAP = 0.05


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


def informative(corpus: ParityCorpus, terms: list[str]) -> list[str]:
    """The terms the embedded store keeps (those in fewer than half of all chunks)."""
    texts = [
        set(analyze("\n".join([r.content, *r.important_keywords, *r.questions])))
        for records in corpus.documents.values()
        for r in records
    ]
    return [t for t in dict.fromkeys(terms) if 2 * sum(t in text for text in texts) < len(texts)]


def ranked(hits: list[ScoredChunk]) -> list[str]:
    return [hit.record.chunk_id for hit in hits]


async def test_keyword_leg_ranks_identically_one_term_at_a_time(
    both_stores: tuple[SearchStore, SearchStore, ParityCorpus],
) -> None:
    """With one term, BM25 ranks by term frequency and length alone (the IDF is one
    factor for every hit), and there the stores agree exactly: the same chunks, in the
    same order, and scores in one fixed ratio (Lucene's IDF formula and its missing
    (k1 + 1) factor scale every hit alike)."""
    embedded, elastic, corpus = both_stores
    words = sorted({t for q in corpus.keyword_queries for t in query_terms(q)})
    for word in words:
        for filter in corpus.filters:
            mine = await embedded.keyword_search([word], filter, 100)
            theirs = await elastic.keyword_search([word], filter, 100)
            assert ranked(mine) == ranked(theirs), (word, filter)
            ratios = [t.score / m.score for m, t in zip(mine, theirs, strict=True)]
            assert ratios == pytest.approx([ratios[0]] * len(ratios), rel=1e-4) if ratios else True


async def test_keyword_leg_multi_term_queries_agree_but_for_near_ties(
    both_stores: tuple[SearchStore, SearchStore, ParityCorpus],
) -> None:
    """With several terms each store weighs them by its own IDF: FTS5's
    log((N - n + 0.5) / (n + 0.5)), floored near zero for a term in half the chunks or
    more (the embedded store then drops it), against Lucene's log(1 + ...), which keeps
    such a term slightly positive. The matched chunks are the same; the order differs
    only between chunks whose scores are close (measured: within MAX_SWAP_GAP of each
    other on both stores; docs/search.md)."""
    embedded, elastic, corpus = both_stores
    swapped, widest = 0, 0.0
    for question in corpus.keyword_queries:
        for filter in corpus.filters:
            terms = query_terms(question)
            mine = await embedded.keyword_search(terms, filter, 200)
            theirs = await elastic.keyword_search(terms, filter, 200)
            if len(set(terms)) == len(informative(corpus, terms)):
                assert set(ranked(mine)) == set(ranked(theirs)), (question, filter)
            score_of = {h.record.chunk_id: h.score for h in mine}
            place = {chunk_id: i for i, chunk_id in enumerate(ranked(theirs))}
            top = ranked(mine)[:TOP_K]
            for i, first in enumerate(top):
                for second in top[i + 1 :]:
                    if place.get(first, 10**6) > place.get(second, 10**6):
                        swapped += 1
                        gap = 1 - score_of[second] / score_of[first]
                        widest = max(widest, gap)
                        assert gap <= MAX_SWAP_GAP, (question, filter, first, second, gap)
    print(f"pairs ordered differently in the top {TOP_K}: {swapped}, widest gap {widest:.3f}")


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
