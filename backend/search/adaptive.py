"""The adaptive default of fusion: how much this query should trust each leg.

No fixed weighting serves every corpus: on DBpedia-entity the embedding is strong and
BM25 weak (every fixed fusion loses to vectors alone), on the Chinese CMRC set BM25 is
slightly ahead and a balanced fusion beats both. So the weight is judged per query from
the two score columns over the candidates (docs/retrieval.md has the measurements):

- The vector leg is the default judge: it reads meaning, so a shared but ambiguous word
  does not fool it.
- The keyword leg earns up to half the weight when this query gives evidence that its
  ranking means something: **agreement** (the share of its top 10 that is also in the
  vector leg's top 10, beyond what chance gives among this many candidates: lexical
  matching tracks meaning here, so it sharpens the order)
  or **decisiveness** beyond the vector leg's (its 10th best falls further below its
  best than the vector leg's does: a rare name or code that singles out a few chunks,
  which an embedding smooths over).

A flat keyword leg that disagrees with the vectors gets ~0.
"""

from __future__ import annotations

import numpy as np

# How deep the weighting looks into each leg: the top 10, what nDCG@10 and a first page
# judge.
DEPTH = 10


def scaled_cosines(cosines: np.ndarray, in_vector_leg: np.ndarray, term: np.ndarray) -> np.ndarray:
    """Cosines rescaled for ranking: this query's best vector hit 1, and 0 at the lowest
    cosine among the chunks either leg puts forward (the vector leg's weakest, and the
    keyword leg's top 10), clipped. An embedding model's cosines crowd a narrow band
    (e5: 0.75..0.9 for anything), so the raw value would barely move a ranking; the span
    of this query's own candidates is what a cosine means here. Taking the keyword leg's
    top hits into the span keeps it from depending on how deep the vector leg was read
    (its 64th best sits much higher than its 1024th). Used to rank only: the reported
    similarity is not relative (see `fusion.fuse`)."""
    leg = cosines[in_vector_leg]
    if leg.size == 0:
        return np.zeros_like(cosines)
    top, floor = float(leg.max()), float(leg.min())
    keyword_top = top_indices(term, min(DEPTH, term.size))
    lexical = [i for i in keyword_top if term[i] > 0.0]
    if lexical:
        floor = min(floor, float(cosines[lexical].min()))
    if top - floor <= 1e-9:
        return (cosines >= top - 1e-9).astype(np.float64)
    return np.clip((cosines - floor) / (top - floor), 0.0, 1.0)


def nth_best(scores: np.ndarray, n: int) -> float:
    return float(np.partition(scores, scores.size - n)[scores.size - n])


def top_indices(scores: np.ndarray, n: int) -> set[int]:
    return {int(i) for i in np.argsort(-scores, kind="stable")[:n]}


def beyond_chance(overlap: float, chance: float) -> float:
    """The share of two top lists' overlap that chance does not explain (as Cohen's
    kappa corrects agreement): two top 10s drawn at random from 40 candidates share a
    quarter of their chunks without either ranking meaning anything."""
    if chance >= 1.0:
        return overlap
    return max(0.0, (overlap - chance) / (1.0 - chance))


def adaptive_vector_weight(scaled_vector: np.ndarray, term: np.ndarray) -> float:
    """The vector leg's weight for this query, from the two columns over the candidates
    (scaled cosines and term similarities, each 0..1 with the leg's best at 1)."""
    if term.size == 0 or term.max() <= 0.0:
        return 1.0  # no keyword evidence at all
    depth = min(DEPTH, term.size)
    overlap = len(top_indices(term, depth) & top_indices(scaled_vector, depth)) / depth
    agreement = beyond_chance(overlap, depth / term.size)
    vector_nth, term_nth = nth_best(scaled_vector, depth), nth_best(term, depth)
    excess = max(0.0, vector_nth - term_nth) / vector_nth if vector_nth > 0.0 else 0.0
    return 1.0 - max(agreement, excess) / 2.0
