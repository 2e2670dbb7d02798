"""Fusing the keyword and vector legs into one ranking, identically for every store.

Pure functions, no I/O: the retrieval service fetches both legs with
`SearchStore.search_legs` and hands them here, so the embedded store and Elasticsearch
rank the same candidates the same way.

Both per-chunk similarities are normalised to 0..1 so a `similarity_threshold` means
the same whichever store ran the query:

- `vector_similarity` is the chunk's cosine to the query for EVERY candidate (the
  vector leg's own score for its hits, computed from the record's vector for a
  keyword-only hit, so it still gets its true cosine rather than 0), calibrated to the
  embedding model: `(cosine - baseline) / (1 - baseline)` clipped to 0..1, the
  baseline being what the model gives unrelated texts
  (`backend/providers/embedding_baseline.py`; e5 gives them 0.75, so a raw cosine
  would pass any off-topic question over RAGFlow's 0.2 threshold).
- `term_similarity` is the chunk's BM25 divided by the best BM25 of this query (the raw
  scale differs between FTS5 and Lucene, the ratio hardly does). A candidate the keyword
  leg did not return gets its query-term coverage times the weakest keyword hit's
  value: at most what a returned hit has, and 0 when it shares no query term.

`similarity = w * vector_similarity + (1 - w) * term_similarity`, with `w` the vector
weight: fixed when the request forces one (`effective_vector_weight`), otherwise judged
per query (`backend/search/adaptive.py`). A fixed weight ranks by that similarity, as
RAGFlow does. The adaptive default ranks by `w * scaled cosine + (1 - w) *
term_similarity` (cosines spread over this query's vector leg, best 1, weakest 0) but
still reports, and thresholds on, the absolute similarity: a relative score would give
every question a perfect best hit, and `similarity_threshold` / `empty_response` could
never turn an unrelated question away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backend.search.adaptive import adaptive_vector_weight, scaled_cosines
from backend.search.store import ChunkRecord, ScoredChunk

# RAGFlow's default `vector_similarity_weight` (its SDK always sends it).
RAGFLOW_DEFAULT_VECTOR_WEIGHT = 0.3


def effective_vector_weight(requested: float | None) -> float | None:
    """The vector weight a request's `vector_similarity_weight` asks for: None (the
    adaptive default) when it is absent or RAGFlow's default 0.3, which RAGFlow's SDK
    sends on every call, so it says nothing about this query; any other value is a
    deliberate choice and forces that fixed weight."""
    if requested is None or math.isclose(requested, RAGFLOW_DEFAULT_VECTOR_WEIGHT, abs_tol=1e-9):
        return None
    return min(max(float(requested), 0.0), 1.0)


@dataclass(frozen=True)
class FusedHit:
    record: ChunkRecord
    similarity: float
    vector_similarity: float
    term_similarity: float


def calibrated(cosines: np.ndarray, baseline: float) -> np.ndarray:
    """Cosines on the embedding model's own scale: 0 for an unrelated passage (the
    model's `baseline` cosine), 1 for an identical one."""
    return np.clip((cosines - baseline) / (1.0 - baseline), 0.0, 1.0)


def cosine_similarities(
    records: Sequence[ChunkRecord],
    vector_hits: Sequence[ScoredChunk],
    query_vector: np.ndarray | None,
) -> np.ndarray:
    """Each record's cosine to the query, clamped to 0..1: the vector leg's score where
    it returned the chunk, else from the record's vector (0 without one, or with one of
    another dimension)."""
    result = np.zeros(len(records), dtype=np.float64)
    if query_vector is None:
        return result
    query = np.asarray(query_vector, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm == 0.0:
        return result
    known = {hit.record.chunk_id: hit.score for hit in vector_hits}
    rows = []
    for index, record in enumerate(records):
        if (cosine := known.get(record.chunk_id)) is not None:
            result[index] = cosine
        elif record.vector is not None and np.asarray(record.vector).size == query.size:
            rows.append(index)
    if not rows:
        return np.clip(result, 0.0, 1.0)
    matrix = np.stack([np.asarray(records[i].vector, dtype=np.float64).ravel() for i in rows])
    lengths = np.linalg.norm(matrix, axis=1)
    lengths[lengths == 0.0] = np.inf
    result[rows] = (matrix @ (query / norm)) / lengths
    return np.clip(result, 0.0, 1.0)


def term_coverage(record: ChunkRecord, query_terms: Sequence[str]) -> float:
    """The share of the query's distinct terms found in the chunk's text. Found by
    substring in the case-folded text rather than by analyzing it (segmenting a Chinese
    chunk costs about a millisecond, even NFKC-normalising it 0.1 ms, times hundreds of
    candidates), so "cat" counts inside "category" and a full-width digit does not match
    its ASCII form: good enough for a value already capped below every real keyword hit's."""
    wanted = set(query_terms)
    if not wanted:
        return 0.0
    text = " ".join((record.content, *record.important_keywords, *record.questions))
    folded = text.casefold()
    return sum(1 for term in wanted if term in folded) / len(wanted)


def term_similarities(
    records: Sequence[ChunkRecord],
    keyword_hits: Sequence[ScoredChunk],
    query_terms: Sequence[str],
) -> np.ndarray:
    """BM25 / best BM25 for keyword hits; coverage x weakest hit's value for the rest."""
    best = max((hit.score for hit in keyword_hits), default=0.0)
    scores = {hit.record.chunk_id: hit.score for hit in keyword_hits}
    if best <= 0.0:
        return np.zeros(len(records), dtype=np.float64)
    weakest = min(scores.values()) / best
    result = np.empty(len(records), dtype=np.float64)
    for index, record in enumerate(records):
        score = scores.get(record.chunk_id)
        if score is not None:
            result[index] = max(score, 0.0) / best
        else:
            result[index] = weakest * term_coverage(record, query_terms)
    return np.clip(result, 0.0, 1.0)


def candidates(
    keyword_hits: Sequence[ScoredChunk], vector_hits: Sequence[ScoredChunk]
) -> list[ChunkRecord]:
    """The union of both legs' records, each chunk once, keyword order then vector order."""
    seen: dict[str, ChunkRecord] = {}
    for hit in (*keyword_hits, *vector_hits):
        seen.setdefault(hit.record.chunk_id, hit.record)
    return list(seen.values())


def fuse(
    keyword_hits: Sequence[ScoredChunk],
    vector_hits: Sequence[ScoredChunk],
    query_vector: np.ndarray | None,
    query_terms: Sequence[str],
    *,
    vector_weight: float | None = None,
    vector_baseline: float = 0.0,
) -> list[FusedHit]:
    """Both legs as one list, best first (ties: the better vector similarity, then chunk
    id, so the order is deterministic). With a fixed `vector_weight` "best" is the
    highest `similarity`; with the adaptive default (None) it is the adaptive ranking
    score, so `similarity` need not descend along the list."""
    records = candidates(keyword_hits, vector_hits)
    if not records:
        return []
    cosines = cosine_similarities(records, vector_hits, query_vector)
    vector = calibrated(cosines, vector_baseline)
    term = term_similarities(records, keyword_hits, query_terms)
    ranking = None
    if query_vector is None or not vector_hits:
        weight = 0.0
    elif vector_weight is None:
        in_vector_leg = np.isin(
            [r.chunk_id for r in records], [hit.record.chunk_id for hit in vector_hits]
        )
        scaled = scaled_cosines(cosines, in_vector_leg, term)
        weight = adaptive_vector_weight(scaled, term)
        ranking = weight * scaled + (1.0 - weight) * term
    else:
        weight = min(max(float(vector_weight), 0.0), 1.0)
    fused = weight * vector + (1.0 - weight) * term
    if ranking is None:
        ranking = fused
    order = sorted(
        range(len(records)),
        key=lambda i: (-ranking[i], -vector[i], records[i].chunk_id),
    )
    return [FusedHit(records[i], float(fused[i]), float(vector[i]), float(term[i])) for i in order]
