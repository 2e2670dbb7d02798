"""Fusion of the keyword and vector legs (backend/search/fusion.py): pure functions, so
the tests build legs by hand."""

from __future__ import annotations

import numpy as np
import pytest

from backend.search.fusion import fuse
from backend.search.store import ChunkRecord, ScoredChunk


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def record(chunk_id: str, content: str, vector: np.ndarray | None) -> ChunkRecord:
    return ChunkRecord(
        chunk_id=chunk_id,
        tenant_id="1",
        dataset_id="d",
        document_id="doc",
        document_name="doc.txt",
        content=content,
        vector=vector,
    )


QUERY = unit(1.0, 0.0, 0.0)


def test_every_candidate_gets_both_similarities_normalised() -> None:
    only_keyword = record("k", "apple pie recipe", unit(0.0, 1.0, 0.0))
    only_vector = record("v", "apple orchard", unit(1.0, 0.2, 0.0))
    both = record("b", "apple pie", unit(1.0, 1.0, 0.0))
    keyword = [ScoredChunk(only_keyword, 7.0), ScoredChunk(both, 3.5)]
    vector = [ScoredChunk(only_vector, 0.98), ScoredChunk(both, 0.7)]

    hits = {
        h.record.chunk_id: h
        for h in fuse(keyword, vector, QUERY, ["apple", "pie"], vector_weight=0.5)
    }

    assert set(hits) == {"k", "v", "b"}
    for hit in hits.values():
        assert 0.0 <= hit.vector_similarity <= 1.0
        assert 0.0 <= hit.term_similarity <= 1.0
    # A keyword-only candidate still gets its true cosine (orthogonal: 0).
    assert hits["k"].vector_similarity == pytest.approx(0.0, abs=1e-6)
    assert hits["b"].vector_similarity == pytest.approx(
        float(unit(1.0, 1.0, 0.0) @ QUERY), rel=1e-5
    )
    # BM25 relative to the query's best.
    assert hits["k"].term_similarity == pytest.approx(1.0)
    assert hits["b"].term_similarity == pytest.approx(0.5)
    # A vector-only candidate sharing half the query terms: half the weakest hit's value.
    assert hits["v"].term_similarity == pytest.approx(0.25)


def test_sorted_by_similarity_and_fixed_weights_are_applied() -> None:
    a = record("a", "alpha", unit(1.0, 0.0, 0.0))
    b = record("b", "beta", unit(0.0, 1.0, 0.0))
    keyword = [ScoredChunk(b, 4.0)]
    vector = [ScoredChunk(a, 1.0)]

    vector_heavy = fuse(keyword, vector, QUERY, ["beta"], vector_weight=0.9)
    keyword_heavy = fuse(keyword, vector, QUERY, ["beta"], vector_weight=0.1)

    assert [h.record.chunk_id for h in vector_heavy] == ["a", "b"]
    assert [h.record.chunk_id for h in keyword_heavy] == ["b", "a"]
    for hits in (vector_heavy, keyword_heavy):
        similarities = [h.similarity for h in hits]
        assert similarities == sorted(similarities, reverse=True)
    assert vector_heavy[0].similarity == pytest.approx(0.9)


def test_no_query_vector_ranks_by_keywords_and_empty_legs_give_nothing() -> None:
    a = record("a", "alpha", unit(1.0, 0.0, 0.0))
    b = record("b", "alpha alpha", None)
    hits = fuse([ScoredChunk(b, 2.0), ScoredChunk(a, 1.0)], [], None, ["alpha"])
    assert [h.record.chunk_id for h in hits] == ["b", "a"]
    assert all(h.vector_similarity == 0.0 for h in hits)
    assert fuse([], [], QUERY, ["alpha"]) == []


def test_only_a_weight_other_than_ragflows_default_overrides_the_adaptive_one() -> None:
    from backend.search.fusion import effective_vector_weight

    assert effective_vector_weight(None) is None
    assert effective_vector_weight(0.3) is None  # what RAGFlow's SDK always sends
    assert effective_vector_weight(0.30000000001) is None
    assert effective_vector_weight(0.0) == 0.0
    assert effective_vector_weight(0.7) == 0.7
    assert effective_vector_weight(1.0) == 1.0
