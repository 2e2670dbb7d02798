"""Each process's in-memory vector matrices, one per dataset, and exact cosine top-k.

Reading 100k vectors back out of SQLite costs hundreds of milliseconds; a query's
matrix-vector product over them costs a few. So a process keeps each searched dataset's
vectors as one unit-normalised float32 matrix and reuses it for as long as the
dataset's version in the database (bumped in the same transaction as every write to
its chunks) is the version it was loaded at. The check is one indexed read per query,
made inside the query's own read transaction, so a matrix always matches the snapshot
the rest of the query sees. Matrices are evicted least recently used beyond a byte
budget (SEARCH_VECTOR_CACHE_MB); the newest one is kept even if it alone is larger.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DatasetVectors:
    """A dataset's embedded chunks at one version: row ids, unit vectors, and what the
    filters need (availability, document of each row)."""

    version: int
    ids: np.ndarray  # int64 `chunks.id`
    matrix: np.ndarray  # (n, dimension) float32, rows of unit length (or zero)
    available: np.ndarray  # bool
    document_codes: np.ndarray  # int32 index into `documents`
    documents: dict[str, int]

    @property
    def nbytes(self) -> int:
        return self.matrix.nbytes + self.ids.nbytes + self.document_codes.nbytes

    def scores(
        self,
        query: np.ndarray,
        document_ids: Sequence[str] | None,
        available_only: bool,
        top_k: int,
    ) -> list[tuple[int, float]]:
        """The best `top_k` (row id, cosine) of this dataset under the filters."""
        if not len(self.ids) or top_k <= 0:
            return []
        scores = self.matrix @ query
        keep = self.available.copy() if available_only else np.ones(len(self.ids), dtype=bool)
        if document_ids is not None:
            codes = [self.documents[d] for d in document_ids if d in self.documents]
            keep &= np.isin(self.document_codes, np.asarray(codes, dtype=np.int32))
        if keep.all():  # the common case: skip gathering a copy of every score
            candidates = np.arange(len(self.ids))
            if len(candidates) > top_k:
                candidates = np.argpartition(-scores, top_k - 1)[:top_k]
        else:
            candidates = np.flatnonzero(keep)
            if len(candidates) > top_k:
                best = np.argpartition(-scores[candidates], top_k - 1)[:top_k]
                candidates = candidates[best]
        # Highest score first; ties by row id, so the order is the same on every run.
        order = np.lexsort((self.ids[candidates], -scores[candidates]))
        chosen = candidates[order]
        return [(int(i), float(s)) for i, s in zip(self.ids[chosen], scores[chosen], strict=True)]


def load_dataset_vectors(
    conn: sqlite3.Connection, dataset_id: str, version: int, dimension: int
) -> DatasetVectors:
    """Read a dataset's vectors from `conn`'s current snapshot."""
    rows = conn.execute(
        "SELECT id, document_id, available, vector FROM chunks "
        "WHERE dataset_id = ? AND vector IS NOT NULL ORDER BY id",
        (dataset_id,),
    ).fetchall()
    documents: dict[str, int] = {}
    matrix = np.frombuffer(b"".join(row[3] for row in rows), dtype=np.float32)
    matrix = matrix.reshape(len(rows), dimension).copy()
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return DatasetVectors(
        version=version,
        ids=np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)),
        matrix=matrix,
        available=np.fromiter((bool(row[2]) for row in rows), dtype=bool, count=len(rows)),
        document_codes=np.fromiter(
            (documents.setdefault(row[1], len(documents)) for row in rows),
            dtype=np.int32,
            count=len(rows),
        ),
        documents=documents,
    )


class VectorCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, DatasetVectors] = OrderedDict()
        self.lock = threading.Lock()
        self.loads = 0  # matrices read from the database (tests and benchmarks watch it)

    def get(
        self, conn: sqlite3.Connection, dataset_id: str, version: int, dimension: int
    ) -> DatasetVectors:
        """The dataset's matrix at `version`, loaded through `conn` when missing or stale."""
        with self.lock:
            entry = self.entries.get(dataset_id)
            if entry is not None and entry.version == version:
                self.entries.move_to_end(dataset_id)
                return entry
        # Loaded outside the lock: two threads may both load a stale dataset, but a slow
        # load never holds up searches of other datasets.
        entry = load_dataset_vectors(conn, dataset_id, version, dimension)
        with self.lock:
            self.loads += 1
            current = self.entries.get(dataset_id)
            if current is None or current.version <= version:
                self.entries[dataset_id] = entry
                self.entries.move_to_end(dataset_id)
            self.evict()
        return entry

    def evict(self) -> None:
        total = sum(entry.nbytes for entry in self.entries.values())
        while total > self.max_bytes and len(self.entries) > 1:
            _, dropped = self.entries.popitem(last=False)
            total -= dropped.nbytes

    def forget(self, dataset_id: str) -> None:
        with self.lock:
            self.entries.pop(dataset_id, None)
