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
    vector = [
        ScoredChunk(only_vector, float(unit(1.0, 0.2, 0.0) @ QUERY)),
        ScoredChunk(both, float(unit(1.0, 1.0, 0.0) @ QUERY)),
    ]

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


def columns(term: list[float], vector: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(vector, dtype=np.float64), np.array(term, dtype=np.float64)


def test_a_flat_keyword_leg_that_disagrees_defers_to_the_vectors() -> None:
    from backend.search.adaptive import adaptive_vector_weight

    # 20 candidates: the vector leg prefers 0..9, the keyword leg (nearly flat: its 10th
    # best at 0.9 of its best) prefers 10..19.
    vector = [1.0 - i * 0.05 for i in range(20)]
    term = [0.0] * 10 + [1.0 - i * 0.01 for i in range(10)]
    scaled, terms = columns(term, vector)
    assert adaptive_vector_weight(scaled, terms) == pytest.approx(1.0)


def test_agreeing_legs_reinforce_each_other() -> None:
    from backend.search.adaptive import adaptive_vector_weight

    vector = [1.0 - i * 0.05 for i in range(20)]
    term = [1.0 - i * 0.01 for i in range(10)] + [0.0] * 10  # the same top 10, flat
    scaled, terms = columns(term, vector)
    assert adaptive_vector_weight(scaled, terms) == pytest.approx(0.5)


def test_overlap_that_chance_explains_earns_nothing() -> None:
    from backend.search.adaptive import adaptive_vector_weight, beyond_chance

    # 20 candidates: two random top 10s share half their chunks by chance alone.
    vector = [1.0 - i * 0.05 for i in range(20)]
    term = [0.0] * 5 + [1.0 - i * 0.01 for i in range(10)] + [0.0] * 5  # shares 5..9
    scaled, terms = columns(term, vector)
    assert adaptive_vector_weight(scaled, terms) == pytest.approx(1.0)
    assert beyond_chance(0.75, 0.5) == pytest.approx(0.5)
    assert beyond_chance(0.2, 0.5) == 0.0
    assert beyond_chance(0.4, 1.0) == 0.4  # every candidate is in both tops


def test_a_decisive_keyword_leg_earns_weight_where_vectors_are_not() -> None:
    from backend.search.adaptive import adaptive_vector_weight

    # The vector leg's top 10 all sit near its best (e5 cosines crowd); the keyword leg
    # singles out one chunk the vector leg ranks 15th (a rare name or code).
    vector = [1.0 - i * 0.01 for i in range(20)]
    term = [0.05] * 20
    term[14] = 1.0
    scaled, terms = columns(term, vector)
    weight = adaptive_vector_weight(scaled, terms)
    assert weight < 0.6
    assert weight == pytest.approx(1 - (0.91 - 0.05) / 0.91 / 2)
    # ...and through fuse, that chunk comes first.
    records = [record(f"c{i:02}", "text", unit(1.0, 0.02 * i, 0.0)) for i in range(20)]
    keyword = [ScoredChunk(records[14], 10.0)] + [
        ScoredChunk(r, 0.5) for i, r in enumerate(records) if i != 14
    ]
    vector_hits = [ScoredChunk(r, float(r.vector @ QUERY)) for r in records]
    hits = fuse(keyword, vector_hits, QUERY, ["text"])
    assert hits[0].record.chunk_id == "c14"
    assert (
        fuse(keyword, vector_hits, QUERY, ["text"], vector_weight=1.0)[0].record.chunk_id == "c00"
    )


def test_no_keyword_evidence_means_vectors_alone() -> None:
    from backend.search.adaptive import adaptive_vector_weight

    scaled, terms = columns([0.0] * 5, [1.0, 0.5, 0.4, 0.2, 0.0])
    assert adaptive_vector_weight(scaled, terms) == 1.0


def test_the_adaptive_default_reports_absolute_similarities() -> None:
    """It ranks by cosines spread over the query's own vector leg, but the similarity it
    reports (and a threshold judges) is absolute: a question unrelated to every chunk
    must not get a perfect best hit, or `empty_response` could never fire."""
    far = [record(f"f{i}", "lorem", unit(0.1 + 0.01 * i, 1.0, 0.0)) for i in range(5)]
    vector_hits = [ScoredChunk(r, float(r.vector @ QUERY)) for r in far]
    hits = fuse([], vector_hits, QUERY, ["unrelated"])
    assert [h.record.chunk_id for h in hits] == ["f4", "f3", "f2", "f1", "f0"]
    assert max(h.similarity for h in hits) < 0.2
    assert hits[0].similarity == pytest.approx(hits[0].vector_similarity)


def test_a_vector_legs_score_is_the_cosine_of_a_record_without_its_vector() -> None:
    bare = record("v", "no vector returned", None)
    hits = fuse([], [ScoredChunk(bare, 0.8)], QUERY, ["x"], vector_weight=1.0)
    assert hits[0].vector_similarity == pytest.approx(0.8)


def test_vector_similarity_is_calibrated_to_the_models_unrelated_cosine() -> None:
    """e5 gives unrelated texts ~0.75-0.78: calibrated, that is 0 and a near-identical
    passage stays near 1, so a threshold means the same for every model."""
    from backend.providers.embedding_baseline import MAX_BASELINE, unrelated_cosine

    crowded = np.array([[1.0, 0.0], [0.6, 0.8]])
    assert unrelated_cosine(crowded, crowded) == pytest.approx(0.6)
    opposite = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert unrelated_cosine(opposite, opposite) == 0.0  # clamped
    assert unrelated_cosine(np.ones((2, 2)), np.ones((2, 2))) == MAX_BASELINE

    near = record("near", "text", unit(1.0, 0.05, 0.0))
    far = record("far", "text", unit(0.78, 0.626, 0.0))  # cosine 0.78
    vector_hits = [ScoredChunk(r, float(r.vector @ QUERY)) for r in (near, far)]
    hits = {
        h.record.chunk_id: h
        for h in fuse([], vector_hits, QUERY, ["x"], vector_weight=1.0, vector_baseline=0.78)
    }
    assert hits["far"].vector_similarity == pytest.approx(0.0, abs=1e-3)
    assert hits["near"].vector_similarity > 0.99


def test_each_leg_gives_a_window_widened_for_the_page_and_the_reranker() -> None:
    from backend.search.retrieval import FUSION_WINDOW, leg_depth
    from backend.settings import get_settings
    from schemas.retrieval import RetrievalRequest

    def depth(reranker: object | None = None, **fields: int) -> int:
        request = RetrievalRequest(question="q", dataset_ids=["a" * 32], **fields)
        return leg_depth(request, reranker)  # type: ignore[arg-type]

    assert depth() == FUSION_WINDOW == 64
    assert depth(page=3, page_size=30) == 90  # the third page must exist
    assert depth(top_k=20) == 20  # never more than asked
    assert depth(page=3, page_size=30, top_k=70) == 70
    assert depth(reranker=object()) == max(64, get_settings().rerank_top_n)
