"""A document's chunks embedded in turns with every other document of the worker.

Each batch waits for its turn in the model's line (`ingest_turns.py`: round-robin by
user, then by document), is sized by the model's measured speed (`batch_pace.py`: about
EMBEDDING_BATCH_SECONDS), and reports chunks done/total with an ETA after it. The ETA is
the chunks left at this document's own rate so far, waits for its turns included, so it
already accounts for the documents it shares the model with.

A worker being stopped (a deploy) pauses the document after the batch under way
(`should_pause`, EmbeddingPaused with the rows so far); the run that takes it over passes
those rows back (`resumed`) and embeds only the rest.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from backend.knowledge.batch_pace import BatchPace
from backend.knowledge.ingest_turns import FairTurns
from backend.providers.embeddings import EmbeddingProvider

# Called after each batch with (chunks embedded, all of them, seconds left or None).
Progress = Callable[[int, int, float | None], Awaitable[None]]


class EmbeddingPaused(Exception):
    """Embedding stopped at a batch boundary; `vectors` are the first texts' rows."""

    def __init__(self, vectors: np.ndarray) -> None:
        super().__init__(f"paused after {len(vectors)} vectors")
        self.vectors = vectors


async def embed_in_turns(
    provider: EmbeddingProvider,
    texts: Sequence[str],
    *,
    line: FairTurns,
    pace: BatchPace,
    user: int,
    document: str,
    on_batch: Progress,
    resumed: np.ndarray | None = None,
    should_pause: Callable[[], bool] | None = None,
) -> np.ndarray:
    """(len(texts), dimension) float32 rows, one fairly-scheduled batch at a time; the
    first `len(resumed)` rows are `resumed`'s, not embedded again."""
    rows: list[np.ndarray] = [] if resumed is None or not len(resumed) else [resumed]
    begun = time.monotonic()
    start = first = 0 if resumed is None else len(resumed)
    while start < len(texts):
        if should_pause is not None and should_pause():
            raise EmbeddingPaused(
                np.concatenate(rows) if rows else np.empty((0, provider.dimension), np.float32)
            )
        async with line.turn(user, document):
            end = pace.batch_end(texts, start)
            batch = texts[start:end]
            called = time.monotonic()
            rows.append(await provider.embed_documents(batch))
            pace.record(batch, time.monotonic() - called)
        start = end
        elapsed = time.monotonic() - begun
        left = len(texts) - start
        rate_known = elapsed > 0 and start > first
        await on_batch(start, len(texts), left * elapsed / (start - first) if rate_known else None)
    if not rows:
        return np.empty((0, provider.dimension), dtype=np.float32)
    return np.concatenate(rows)
