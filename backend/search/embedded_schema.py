"""The embedded store's SQLite schema, and chunk rows to and from `ChunkRecord`s.

One database file holds everything, so one transaction covers a chunk's metadata, its
keyword index entry and its vector:

- `chunks`: one row per chunk. Small filter columns come first and the content and
  vector last, so checking a row against a filter never reads its overflow pages.
- `chunk_terms`: an FTS5 table of the analyzer's output, rowid = `chunks.id`. Its
  tokenizer is `ascii`: the text is already analyzed into space-separated terms made
  only of letters, digits and marks, and `ascii` splits on ASCII non-alphanumerics
  (spaces, here) while treating every non-ASCII character as part of a term. So FTS5
  counts exactly the analyzer's terms; `unicode61` would re-split them by its own rules
  and strip diacritics, and BM25 would count different tokens than Elasticsearch's
  whitespace analyzer over the same terms.
- `chunk_terms_vocab`: FTS5's own vocabulary view, giving each term's document count.
- `search_datasets`: per dataset, its tenant (a dataset has one owner; the store
  refuses a second), the dimension of its vectors, its chunk count, and a version
  bumped by every write that touches its chunks, so each process's in-memory vector
  matrix knows when it is stale.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.search import embedded_postings as postings
from backend.search.analyzer import analyzed_text
from backend.search.store import ChunkRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    available INTEGER NOT NULL,
    token_count INTEGER NOT NULL,
    create_time REAL NOT NULL,
    document_name TEXT NOT NULL,
    important_keywords TEXT NOT NULL,
    questions TEXT NOT NULL,
    positions TEXT NOT NULL,
    content TEXT NOT NULL,
    vector BLOB
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks (document_id);
CREATE INDEX IF NOT EXISTS chunks_by_dataset ON chunks (dataset_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5 (terms, tokenize = 'ascii');
CREATE TABLE IF NOT EXISTS search_datasets (
    dataset_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    dimension INTEGER,
    version INTEGER NOT NULL DEFAULT 0,
    chunk_count INTEGER NOT NULL DEFAULT 0
);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms_vocab USING fts5vocab (chunk_terms, 'row');
"""

COLUMNS = (
    "chunk_id, tenant_id, dataset_id, document_id, available, token_count, create_time, "
    "document_name, important_keywords, questions, positions, content, vector"
)
# Ids per `IN (...)` list, well under SQLite's limit on bound parameters.
BATCH = 500
INSERT_WITH_ID = f"INSERT INTO chunks (id, {COLUMNS}) VALUES ({', '.join('?' * 14)})"


def keyword_text(content: str, keywords: Sequence[str], questions: Sequence[str]) -> str:
    """What the keyword leg indexes for a chunk: its content, important keywords and
    questions (an FAQ chunk is found by its question), analyzed."""
    return analyzed_text("\n".join([content, *keywords, *questions]))


def vector_blob(vector: np.ndarray | None) -> bytes | None:
    if vector is None:
        return None
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError("A chunk vector must be a non-empty 1-D array of finite floats")
    return array.tobytes()


def row_values(record: ChunkRecord) -> tuple[Any, ...]:
    return (
        record.chunk_id,
        record.tenant_id,
        record.dataset_id,
        record.document_id,
        int(record.available),
        int(record.token_count),
        float(record.create_time),
        record.document_name,
        json.dumps(list(record.important_keywords), ensure_ascii=False),
        json.dumps(list(record.questions), ensure_ascii=False),
        json.dumps([list(box) for box in record.positions]),
        record.content,
        vector_blob(record.vector),
    )


def json_tuple(text: str) -> tuple[Any, ...]:
    """A stored JSON list as a tuple; most are empty, and skipping the parser for those
    is a third of building a search hit's record."""
    return () if text == "[]" else tuple(json.loads(text))


def record_of(row: Sequence[Any]) -> ChunkRecord:
    """A `SELECT {COLUMNS}` row as a record."""
    vector = np.frombuffer(row[12], dtype=np.float32) if row[12] is not None else None
    return ChunkRecord(
        chunk_id=row[0],
        tenant_id=row[1],
        dataset_id=row[2],
        document_id=row[3],
        available=bool(row[4]),
        token_count=row[5],
        create_time=row[6],
        document_name=row[7],
        important_keywords=json_tuple(row[8]),
        questions=json_tuple(row[9]),
        positions=tuple(tuple(box) for box in json_tuple(row[10])),
        content=row[11],
        vector=vector,
    )


def match_any(terms: Iterable[str]) -> str:
    """An FTS5 query matching rows with any of `terms`. Each term is quoted, so words
    like OR/NOT/NEAR are terms, not operators; the analyzer never emits a quote."""
    return " OR ".join(f'"{term}"' for term in dict.fromkeys(terms) if term)


def match_all(terms: Iterable[str]) -> str:
    return " AND ".join(f'"{term}"' for term in dict.fromkeys(terms) if term)


def placeholders(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def register_datasets(conn: sqlite3.Connection, records: Sequence[ChunkRecord]) -> None:
    """Record each dataset's tenant and vector dimension; refuse a record whose tenant or
    dimension disagrees with its dataset's (one owner; one embedding model)."""
    seen: dict[str, tuple[str, int | None]] = {}
    for record in records:
        dimension = None if record.vector is None else int(np.asarray(record.vector).size)
        known = seen.get(record.dataset_id)
        if known is None:
            row = conn.execute(
                "SELECT tenant_id, dimension FROM search_datasets WHERE dataset_id = ?",
                (record.dataset_id,),
            ).fetchone()
            known = (row[0], row[1]) if row else (record.tenant_id, None)
        tenant, known_dimension = known
        if tenant != record.tenant_id:
            raise ValueError(
                f"Dataset {record.dataset_id} belongs to tenant {tenant}, not {record.tenant_id}"
            )
        if dimension is not None and known_dimension not in (None, dimension):
            raise ValueError(
                f"Dataset {record.dataset_id} holds {known_dimension}-dimensional vectors; "
                f"chunk {record.chunk_id} has {dimension}"
            )
        seen[record.dataset_id] = (tenant, known_dimension or dimension)
    for dataset_id, (tenant, dimension) in seen.items():
        conn.execute(
            "INSERT INTO search_datasets (dataset_id, tenant_id, dimension) VALUES (?, ?, ?) "
            "ON CONFLICT (dataset_id) DO UPDATE SET dimension = excluded.dimension",
            (dataset_id, tenant, dimension),
        )


def bump_versions(conn: sqlite3.Connection, dataset_ids: Iterable[str]) -> None:
    """Mark datasets changed (their cached vector matrices are stale); a dataset left
    without chunks forgets its dimension, so it may be re-embedded with another model."""
    for dataset_id in set(dataset_ids):
        conn.execute(
            "UPDATE search_datasets SET version = version + 1, dimension = CASE WHEN EXISTS "
            "(SELECT 1 FROM chunks WHERE dataset_id = ?1 AND vector IS NOT NULL) "
            "THEN dimension END, chunk_count = (SELECT count(*) FROM chunks "
            "WHERE dataset_id = ?1) WHERE dataset_id = ?1",
            (dataset_id,),
        )


def insert_records(conn: sqlite3.Connection, records: Sequence[ChunkRecord]) -> Touched:
    """Insert (or replace, by chunk id) chunks and their FTS5 entries: the datasets and
    documents changed (a replaced chunk may have been another document's). Row ids are
    assigned here (the write lock is held, so max(id) is stable), which lets both tables
    be filled with one executemany each."""
    touched = Touched({r.dataset_id for r in records}, {r.document_id for r in records})
    for start in range(0, len(records), BATCH):
        ids = [record.chunk_id for record in records[start : start + BATCH]]
        touched |= delete_where(conn, f"chunk_id IN ({placeholders(ids)})", ids)[1]
    first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM chunks").fetchone()[0]
    conn.executemany(INSERT_WITH_ID, ((first + i, *row_values(r)) for i, r in enumerate(records)))
    conn.executemany(
        "INSERT INTO chunk_terms (rowid, terms) VALUES (?, ?)",
        (
            (first + i, keyword_text(r.content, r.important_keywords, r.questions))
            for i, r in enumerate(records)
        ),
    )
    return touched


@dataclass
class Touched:
    """What a write changed: datasets (their versions move) and documents (their
    postings are re-derived)."""

    datasets: set[str] = field(default_factory=set)
    documents: set[str] = field(default_factory=set)

    def __or__(self, other: Touched) -> Touched:
        return Touched(self.datasets | other.datasets, self.documents | other.documents)


def finish_write(conn: sqlite3.Connection, touched: Touched) -> None:
    """The end of every write: postings of the touched documents, then dataset versions."""
    postings.rebuild(conn, touched.documents)
    bump_versions(conn, touched.datasets)


def delete_where(
    conn: sqlite3.Connection, condition: str, args: Sequence[Any]
) -> tuple[int, Touched]:
    """Delete the chunks matching `condition` with their index entries: how many, and the
    datasets and documents they were in."""
    rows = conn.execute(
        f"SELECT id, dataset_id, document_id FROM chunks WHERE {condition}", args
    ).fetchall()
    if not rows:
        return 0, Touched()
    ids = [row[0] for row in rows]
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        conn.execute(f"DELETE FROM chunk_terms WHERE rowid IN ({placeholders(batch)})", batch)
        conn.execute(f"DELETE FROM chunks WHERE id IN ({placeholders(batch)})", batch)
    return len(rows), Touched({row[1] for row in rows}, {row[2] for row in rows})
