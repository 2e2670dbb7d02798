"""Reranking fused hits, and what happens when the reranker cannot answer.

The reranker sees the top RERANK_TOP_N fused hits (those above the similarity
threshold) and its score replaces each one's `similarity`; the list is re-sorted by it.
A reranker is an optional refinement of an answer we already have, so when it fails,
answers something unusable or takes longer than RERANK_TIMEOUT_SECONDS, the same hits
are returned in their fused order with their fused similarity, and a warning is logged
for operators: never an error for the user. Choosing an unknown rerank model is the
caller's mistake and a 400 (raised before searching, by the registry).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence

from backend.providers.rerank import Reranker
from backend.search.fusion import FusedHit

log = logging.getLogger("sluice.retrieval")


async def rerank_hits(
    reranker: Reranker, question: str, hits: Sequence[FusedHit], seconds: float
) -> list[FusedHit]:
    """`hits` re-ordered by the reranker's scores, or as given if it fails."""
    if not hits:
        return []
    try:
        async with asyncio.timeout(seconds):
            scores = await reranker.rerank(question, [hit.record.content for hit in hits])
        if len(scores) != len(hits):
            raise ValueError(f"{len(scores)} scores for {len(hits)} documents")
    except Exception as exc:  # any failure at all degrades to the fused order
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        log.warning(
            "rerank model '%s' failed (%s); returning %d hits in fused order",
            reranker.name,
            reason,
            len(hits),
        )
        return list(hits)
    reranked = [
        dataclasses.replace(hit, similarity=score) for hit, score in zip(hits, scores, strict=True)
    ]
    reranked.sort(key=lambda hit: -hit.similarity)
    return reranked
