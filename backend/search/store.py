"""The search store interface: what ingestion writes chunks through and retrieval reads.

Two implementations serve it: the embedded store (`backend/search/embedded.py`, SQLite
FTS5 + NumPy, the single-machine default) and Elasticsearch (issue 10). Both pass one
contract suite (`tests/test_search_store.py`), so the code above them never asks which
store it has. The design choices, and why:

- **The store analyzes, callers don't.** A record carries raw `content`,
  `important_keywords` and `questions`; each store indexes `analyze()` of them
  (`backend/search/analyzer.py`) as whitespace-separated terms, so BM25 counts the same
  tokens in both. Queries pass terms from `query_terms(question)`.
- **Two legs, fused above the store.** `keyword_search` returns raw BM25 scores (higher
  is better, unbounded), `vector_search` cosine similarity (-1..1). Hybrid weighting,
  normalisation and thresholds are Sluice code (issue 10), identical whichever store
  runs, rather than a store's own fusion (Elasticsearch's RRF/linear retrievers need a
  paid licence and would make the stores disagree). `search_legs` fetches both legs in
  one round trip, and on the embedded store from one database snapshot, so a fused
  result never mixes chunks from before and after a re-parse.
- **The tenant filter is inside every leg.** `SearchFilter.tenant_id` (the dataset
  owner's user id) is a condition of the keyword query and of the vector scoring, not a
  post-filter over the top k, so another tenant's chunks can neither leak nor crowd the
  caller's results out of the top k.
- **Keyword-leg records carry their vectors.** Fusion needs both similarities for every
  candidate, and computes a keyword-only hit's cosine from its returned vector without a
  second query. Vector-leg records may come with `vector=None` (Elasticsearch leaves the
  384 floats out of those hits): their score is the cosine. `get_chunk` and
  `list_chunks` return vectors.
- **Re-parse is one operation.** `replace_document` swaps a document's chunks in one
  step: a concurrent search sees all the old chunks or all the new, never half of each,
  and a job delivered twice leaves one copy (chunk ids are upserted).
- **Ownership is the caller's job** (SQL knows who owns a dataset); writes that name
  chunks are scoped by `document_id`, so a chunk id from another document is ignored
  rather than changed.
- **Async methods.** Elasticsearch's client is async; the embedded store runs SQLite
  and NumPy in threads so the event loop never blocks on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ChunkRecord:
    """One searchable chunk. `vector` is float32 (None: not embedded, so absent from the
    vector leg); `positions` are RAGFlow's `[page, left, right, top, bottom]` boxes (or
    whatever a parser records); `create_time` is Unix seconds."""

    chunk_id: str
    tenant_id: str
    dataset_id: str
    document_id: str
    document_name: str
    content: str
    important_keywords: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    positions: tuple[tuple[int, ...], ...] = ()
    available: bool = True
    token_count: int = 0
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    create_time: float = 0.0


@dataclass(frozen=True)
class SearchFilter:
    """Which chunks a search may return. `dataset_ids`/`document_ids` None means no
    restriction beyond the tenant; an empty sequence matches nothing."""

    tenant_id: str
    dataset_ids: Sequence[str] | None = None
    document_ids: Sequence[str] | None = None
    available_only: bool = True


def unit_query(vector: np.ndarray) -> np.ndarray:
    """A query vector as float32 of unit length, as both stores score it; a vector that
    is not finite or is all zeros has no direction and is refused (ValueError)."""
    query = np.asarray(vector, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("The query vector must be finite and not all zeros")
    return query / norm


@dataclass(frozen=True)
class ScoredChunk:
    record: ChunkRecord
    score: float


@dataclass(frozen=True)
class ChunkUpdate:
    """A partial update of one chunk; None leaves a field as it is. A caller changing
    `content` (or keywords/questions, which are embedded with it) passes the new vector."""

    content: str | None = None
    important_keywords: Sequence[str] | None = None
    questions: Sequence[str] | None = None
    available: bool | None = None
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class ChunkPage:
    total: int
    chunks: list[ChunkRecord]


class SearchStoreUnavailable(Exception):
    """The store cannot serve; the message says why (readiness names it)."""


class SearchStore(Protocol):
    async def open(self) -> None:
        """Create what the store needs (tables, indices); idempotent."""
        ...

    async def close(self) -> None: ...

    async def check(self, within: float) -> None:
        """Raise `SearchStoreUnavailable` when the store cannot serve (readiness): one
        cheap read, given up after `within` seconds."""
        ...

    # -- writes --------------------------------------------------------------------------
    async def replace_document(self, document_id: str, records: Sequence[ChunkRecord]) -> None:
        """Make `records` the document's only chunks, atomically (re-parse, or the first
        parse). Every record must have this `document_id`."""
        ...

    async def add_chunks(self, records: Sequence[ChunkRecord]) -> None:
        """Add chunks beside the existing ones (chunks added by hand, FAQ import); a chunk
        id already stored is replaced, so a retried call does not duplicate."""
        ...

    async def update_chunk(
        self, document_id: str, chunk_id: str, update: ChunkUpdate
    ) -> ChunkRecord | None:
        """Apply `update`; the updated record, or None when the document has no such chunk."""
        ...

    async def delete_chunks(self, document_id: str, chunk_ids: Sequence[str]) -> int:
        """Delete the named chunks of one document; how many were deleted."""
        ...

    async def delete_document(self, document_id: str) -> int: ...

    async def delete_dataset(self, dataset_id: str) -> int: ...

    # -- reads ---------------------------------------------------------------------------
    async def get_chunk(self, chunk_id: str, document_id: str | None = None) -> ChunkRecord | None:
        """The chunk, or None (also when it belongs to another document than the one named)."""
        ...

    async def list_chunks(
        self,
        document_id: str,
        *,
        keywords: str = "",
        chunk_id: str | None = None,
        offset: int = 0,
        limit: int = 30,
    ) -> ChunkPage:
        """A document's chunks in document order (the order they were indexed). `keywords`
        keeps chunks containing every analyzed term of it; `chunk_id` just that chunk."""
        ...

    async def count_chunks(self, document_id: str) -> int: ...

    async def keyword_search(
        self, terms: Sequence[str], filter: SearchFilter, top_k: int
    ) -> list[ScoredChunk]:
        """Chunks matching any of `terms` (from `query_terms`), best BM25 first."""
        ...

    async def vector_search(
        self, vector: np.ndarray, filter: SearchFilter, top_k: int
    ) -> list[ScoredChunk]:
        """The `top_k` chunks by cosine similarity to `vector`, exact, best first. Raises
        ValueError when the vector's dimension differs from a searched dataset's."""
        ...

    async def search_legs(
        self, terms: Sequence[str], vector: np.ndarray | None, filter: SearchFilter, top_k: int
    ) -> tuple[list[ScoredChunk], list[ScoredChunk]]:
        """Both legs (keyword, vector) in one round trip and, where the store can, one
        snapshot; `vector` None skips the vector leg."""
        ...
