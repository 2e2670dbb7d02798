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

`similarity = w * scaled cosine + (1 - w) * term_similarity`, where the scaled cosine
puts this query's vector leg on 0..1 (its best hit 1, its weakest 0: an embedding's raw
cosines crowd a narrow band) and `w` is the vector weight: fixed when the request forces
one (`effective_vector_weight`), otherwise judged per query (`adaptive_vector_weight`;
the reasoning and measurements are in docs/retrieval.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backend.search.store import ChunkRecord, ScoredChunk

# RAGFlow's default `vector_similarity_weight` (its SDK always sends it).
RAGFLOW_DEFAULT_VECTOR_WEIGHT = 0.3
# How deep the adaptive weighting looks into each leg: the top 10, what nDCG@10 and a
# first page judge.
DEPTH = 10


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


def scaled_cosines(cosines: np.ndarray, in_vector_leg: np.ndarray) -> np.ndarray:
    """Cosines rescaled over this query's vector leg: its best hit 1, its weakest 0
    (clipped, so a keyword-only candidate below the weakest gets 0). An embedding
    model's cosines crowd a narrow band (e5: 0.75..0.9 for anything), so the raw value
    would barely move a fused score; the leg's own range is what a cosine means here."""
    leg = cosines[in_vector_leg]
    if leg.size == 0:
        return np.zeros_like(cosines)
    top, floor = float(leg.max()), float(leg.min())
    if top - floor <= 1e-9:
        return (cosines >= top - 1e-9).astype(np.float64)
    return np.clip((cosines - floor) / (top - floor), 0.0, 1.0)


def nth_best(scores: np.ndarray, n: int) -> float:
    return float(np.partition(scores, scores.size - n)[scores.size - n])


def top_indices(scores: np.ndarray, n: int) -> set[int]:
    return {int(i) for i in np.argsort(-scores, kind="stable")[:n]}


def adaptive_vector_weight(scaled_vector: np.ndarray, term: np.ndarray) -> float:
    """The vector leg's weight for this query (the adaptive default), from the two score
    columns over the candidates, each 0..1 with the leg's best at 1.

    The vector leg is the default judge (it reads meaning, so it is not fooled by a
    shared but ambiguous word); the keyword leg earns up to half the weight when this
    query gives evidence that its ranking means something:
    - agreement: the share of the keyword leg's top 10 that is also in the vector
      leg's top 10 (lexical matching tracks meaning here, so it sharpens the ranking);
    - decisiveness beyond the vector leg's: how much further its 10th best falls below
      its best than the vector leg's does (a rare name or code that singles out a few
      chunks, which an embedding smooths over).
    A flat keyword leg that disagrees with the vectors gets ~0; see docs/retrieval.md."""
    if term.size == 0 or term.max() <= 0.0:
        return 1.0  # no keyword evidence at all
    depth = min(DEPTH, term.size)
    agreement = len(top_indices(term, depth) & top_indices(scaled_vector, depth)) / depth
    vector_nth, term_nth = nth_best(scaled_vector, depth), nth_best(term, depth)
    excess = max(0.0, vector_nth - term_nth) / vector_nth if vector_nth > 0.0 else 0.0
    return 1.0 - max(agreement, excess) / 2.0


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
    in_vector_leg = np.isin(
        [r.chunk_id for r in records], [hit.record.chunk_id for hit in vector_hits]
    )
    scaled = scaled_cosines(vector, in_vector_leg)
    if query_vector is None or not in_vector_leg.any():
        weight = 0.0
    elif vector_weight is None:
        weight = adaptive_vector_weight(scaled, term)
    else:
        weight = min(max(float(vector_weight), 0.0), 1.0)
    fused = weight * scaled + (1.0 - weight) * term
    hits = [
        FusedHit(record, float(fused[i]), float(vector[i]), float(term[i]))
        for i, record in enumerate(records)
    ]
    hits.sort(key=lambda hit: (-hit.similarity, -hit.vector_similarity, hit.record.chunk_id))
    return hits
