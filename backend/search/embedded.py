"""The embedded search store: SQLite FTS5 for BM25 and float32 vectors in one file.

The single-machine default (nothing to install): the web process and the workers open
the same file (SEARCH_DB_PATH). Sharing is safe because the file is in WAL mode (readers
never block the writer, nor it them), every connection waits up to a busy timeout for
the write lock instead of failing, and writes take the lock up front (`BEGIN IMMEDIATE`)
so they queue rather than deadlock when two processes write at once.

Every SQLite call and NumPy product runs on the store's own threads (each with its own
connection), never on the event loop. A write is one transaction: chunks, keyword
index entries and the dataset's version move together, so a reader sees a re-parse
entirely or not at all. A search reads in one transaction too, so its vector matrix,
its keyword hits and the records it returns all come from one snapshot.

Keyword scores are BM25 as FTS5's `bm25()` computes it (k1 = 1.2, b = 0.75, as
Lucene's defaults), over the store's own postings in NumPy
(`backend/search/embedded_postings.py`, 20-50x faster than calling `bm25()` per matching
row). Its IDF is log((N - n + 0.5) / (n + 0.5)) floored just above zero, so a term in
more than half of all chunks adds almost nothing (Lucene's log(1 + ...) keeps it
slightly positive); N counts every tenant's chunks, as one Elasticsearch index does.
Vector scores are exact cosine similarity over each dataset's
cached matrix (`backend/search/vector_cache.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from backend.metrics.instruments import SEARCH_SECONDS
from backend.search import embedded_postings as postings
from backend.search import embedded_schema as schema
from backend.search.analyzer import analyze
from backend.search.embedded_queries import keyword_hits, vector_hits
from backend.search.store import (
    ChunkPage,
    ChunkRecord,
    ChunkUpdate,
    ScoredChunk,
    SearchFilter,
    SearchStoreUnavailable,
)
from backend.search.vector_cache import VectorCache

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 30.0
THREADS = 4


class EmbeddedSearchStore:
    def __init__(self, path: Path, *, vector_cache_bytes: int = 512 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.vectors = VectorCache(vector_cache_bytes)
        self.executor = ThreadPoolExecutor(THREADS, thread_name_prefix="search-store")
        self.local = threading.local()
        self.connections: list[sqlite3.Connection] = []
        self.lock = threading.Lock()
        self.schema_ready = False

    # -- plumbing ------------------------------------------------------------------------
    def connection(self) -> sqlite3.Connection:
        """This thread's connection, created (and the schema with it) on first use."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            with self.lock:
                self.connections.append(conn)
                if not self.schema_ready:
                    conn.executescript(schema.SCHEMA)
                    postings.ensure_postings(conn)
                    self.schema_ready = True
            self.local.conn = conn
        return conn

    async def run(self, work: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        def transaction() -> T:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self.executor, transaction)

    async def open(self) -> None:
        await self.run(lambda conn: None, write=False)

    async def check(self, within: float) -> None:
        """A read transaction on the file (it is local: only a broken disk fails it)."""
        try:
            await asyncio.wait_for(self.open(), within)
        except (sqlite3.Error, OSError, TimeoutError) as exc:
            raise SearchStoreUnavailable(f"{self.path}: {exc or 'no answer in time'}") from exc

    async def close(self) -> None:
        self.executor.shutdown(wait=True)
        with self.lock:
            for conn in self.connections:
                conn.close()
            self.connections.clear()

    # -- writes --------------------------------------------------------------------------
    async def replace_document(self, document_id: str, records: Sequence[ChunkRecord]) -> None:
        strangers = {r.document_id for r in records} - {document_id}
        if strangers:
            raise ValueError(f"replace_document({document_id}) got chunks of {strangers}")

        def work(conn: sqlite3.Connection) -> None:
            schema.register_datasets(conn, records)
            _, touched = schema.delete_where(conn, "document_id = ?", [document_id])
            touched |= schema.insert_records(conn, records)
            schema.finish_write(conn, touched | schema.Touched(documents={document_id}))

        await self.run(work, write=True)

    async def add_chunks(self, records: Sequence[ChunkRecord]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            schema.register_datasets(conn, records)
            schema.finish_write(conn, schema.insert_records(conn, records))

        await self.run(work, write=True)

    async def update_chunk(
        self, document_id: str, chunk_id: str, update: ChunkUpdate
    ) -> ChunkRecord | None:
        def work(conn: sqlite3.Connection) -> ChunkRecord | None:
            row = conn.execute(
                f"SELECT id, {schema.COLUMNS} FROM chunks WHERE chunk_id = ? AND document_id = ?",
                (chunk_id, document_id),
            ).fetchone()
            if row is None:
                return None
            old = schema.record_of(row[1:])
            fields = {
                "content": update.content,
                "important_keywords": update.important_keywords,
                "questions": update.questions,
                "available": update.available,
                "vector": update.vector,
            }
            given = {name: value for name, value in fields.items() if value is not None}
            for name in ("important_keywords", "questions"):
                if name in given:
                    given[name] = tuple(given[name])
            changed = dataclasses.replace(old, **given)
            schema.register_datasets(conn, [changed])
            conn.execute(
                f"UPDATE chunks SET ({schema.COLUMNS}) = ({', '.join('?' * 13)}) WHERE id = ?",
                (*schema.row_values(changed), row[0]),
            )
            terms = schema.keyword_text(
                changed.content, changed.important_keywords, changed.questions
            )
            conn.execute("UPDATE chunk_terms SET terms = ? WHERE rowid = ?", (terms, row[0]))
            touched = schema.Touched({changed.dataset_id}, {changed.document_id})
            schema.finish_write(conn, touched)
            return changed

        return await self.run(work, write=True)

    async def delete_chunks(self, document_id: str, chunk_ids: Sequence[str]) -> int:
        if not chunk_ids:
            return 0
        ids = list(dict.fromkeys(chunk_ids))
        return await self.delete(
            f"document_id = ? AND chunk_id IN ({schema.placeholders(ids)})", [document_id, *ids]
        )

    async def delete_document(self, document_id: str) -> int:
        return await self.delete("document_id = ?", [document_id])

    async def delete_dataset(self, dataset_id: str) -> int:
        return await self.delete("dataset_id = ?", [dataset_id], also=[dataset_id])

    async def delete(self, condition: str, args: list[Any], also: Sequence[str] = ()) -> int:
        def work(conn: sqlite3.Connection) -> int:
            deleted, touched = schema.delete_where(conn, condition, args)
            touched.datasets |= set(also)
            schema.finish_write(conn, touched)
            return deleted

        return await self.run(work, write=True)

    # -- reads ---------------------------------------------------------------------------
    async def get_chunk(self, chunk_id: str, document_id: str | None = None) -> ChunkRecord | None:
        def work(conn: sqlite3.Connection) -> ChunkRecord | None:
            row = conn.execute(
                f"SELECT {schema.COLUMNS} FROM chunks WHERE chunk_id = ?", (chunk_id,)
            ).fetchone()
            record = schema.record_of(row) if row else None
            if record is None or document_id not in (None, record.document_id):
                return None
            return record

        return await self.run(work, write=False)

    async def list_chunks(
        self,
        document_id: str,
        *,
        keywords: str = "",
        chunk_id: str | None = None,
        offset: int = 0,
        limit: int = 30,
    ) -> ChunkPage:
        condition, args = "document_id = ?", [document_id]
        if chunk_id is not None:
            condition, args = condition + " AND chunk_id = ?", [*args, chunk_id]
        if match := schema.match_all(analyze(keywords)):
            condition += " AND id IN (SELECT rowid FROM chunk_terms WHERE chunk_terms MATCH ?)"
            args.append(match)

        def work(conn: sqlite3.Connection) -> ChunkPage:
            total = conn.execute(f"SELECT count(*) FROM chunks WHERE {condition}", args)
            rows = conn.execute(
                f"SELECT {schema.COLUMNS} FROM chunks WHERE {condition} "
                "ORDER BY id LIMIT ? OFFSET ?",
                [*args, max(limit, 0), max(offset, 0)],
            )
            return ChunkPage(total.fetchone()[0], [schema.record_of(r) for r in rows])

        return await self.run(work, write=False)

    async def count_chunks(self, document_id: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            sql = "SELECT count(*) FROM chunks WHERE document_id = ?"
            return conn.execute(sql, (document_id,)).fetchone()[0]

        return await self.run(work, write=False)

    async def keyword_search(
        self, terms: Sequence[str], filter: SearchFilter, top_k: int
    ) -> list[ScoredChunk]:
        return await self.run(lambda conn: keyword_hits(conn, terms, filter, top_k), write=False)

    async def vector_search(
        self, vector: np.ndarray, filter: SearchFilter, top_k: int
    ) -> list[ScoredChunk]:
        return await self.run(
            lambda conn: vector_hits(conn, self.vectors, vector, filter, top_k), write=False
        )

    async def search_legs(
        self, terms: Sequence[str], vector: np.ndarray | None, filter: SearchFilter, top_k: int
    ) -> tuple[list[ScoredChunk], list[ScoredChunk]]:
        def work(conn: sqlite3.Connection) -> tuple[list[ScoredChunk], list[ScoredChunk]]:
            started = time.perf_counter()
            keyword = keyword_hits(conn, terms, filter, top_k)
            between = time.perf_counter()
            SEARCH_SECONDS.labels("embedded", "keyword").observe(between - started)
            if vector is None:
                return keyword, []
            by_vector = vector_hits(conn, self.vectors, vector, filter, top_k)
            SEARCH_SECONDS.labels("embedded", "vector").observe(time.perf_counter() - between)
            return keyword, by_vector

        started = time.perf_counter()
        legs = await self.run(work, write=False)
        SEARCH_SECONDS.labels("embedded", "legs").observe(time.perf_counter() - started)
        return legs
