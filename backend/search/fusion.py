"""Fusing the keyword and vector legs into one ranking, identically for every store.

Pure functions, no I/O: the retrieval service fetches both legs with
`SearchStore.search_legs` and hands them here, so the embedded store and Elasticsearch
rank the same candidates the same way.

Both per-chunk similarities are normalised to 0..1 so a `similarity_threshold` means
the same whichever store ran the query:

- `vector_similarity` is the chunk's cosine to the query (clamped at 0), computed from
  the record's own vector for EVERY candidate, so a keyword-only hit still gets its true
  cosine rather than 0.
- `term_similarity` is the chunk's BM25 divided by the best BM25 of this query (the raw
  scale differs between FTS5 and Lucene, the ratio hardly does). A candidate the keyword
  leg did not return gets its query-term coverage times the weakest keyword hit's
  value: at most what a returned hit has, and 0 when it shares no query term.

`similarity = w * vector_similarity + (1 - w) * term_similarity`, with `w` the vector
weight: fixed when the request forces one, otherwise judged per query (the adaptive
default, see docs/retrieval.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backend.search.store import ChunkRecord, ScoredChunk

# RAGFlow's default `vector_similarity_weight` (its SDK always sends it).
RAGFLOW_DEFAULT_VECTOR_WEIGHT = 0.3
# The weight used while the adaptive default is not yet in place.
FIXED_DEFAULT_VECTOR_WEIGHT = 0.7


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


def cosine_similarities(
    records: Sequence[ChunkRecord], query_vector: np.ndarray | None
) -> np.ndarray:
    """Each record's cosine to the query, clamped to 0..1 (0 without a vector, or with
    one of another dimension)."""
    result = np.zeros(len(records), dtype=np.float64)
    if query_vector is None:
        return result
    query = np.asarray(query_vector, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm == 0.0:
        return result
    rows = [
        index
        for index, record in enumerate(records)
        if record.vector is not None and np.asarray(record.vector).size == query.size
    ]
    if not rows:
        return result
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
) -> list[FusedHit]:
    """Both legs as one list, best `similarity` first (ties: the better vector similarity,
    then chunk id, so the order is deterministic)."""
    records = candidates(keyword_hits, vector_hits)
    if not records:
        return []
    vector = cosine_similarities(records, query_vector)
    term = term_similarities(records, keyword_hits, query_terms)
    weight = FIXED_DEFAULT_VECTOR_WEIGHT if vector_weight is None else vector_weight
    weight = min(max(float(weight), 0.0), 1.0)
    if query_vector is None:
        weight = 0.0
    fused = weight * vector + (1.0 - weight) * term
    hits = [
        FusedHit(record, float(fused[i]), float(vector[i]), float(term[i]))
        for i, record in enumerate(records)
    ]
    hits.sort(key=lambda hit: (-hit.similarity, -hit.vector_similarity, hit.record.chunk_id))
    return hits
