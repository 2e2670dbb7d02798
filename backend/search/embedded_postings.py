"""The embedded store's keyword index: BM25 postings per (term, document), scored in NumPy.

FTS5's `bm25()` scores every row a query matches, one auxiliary-function call a row, so
at 100k chunks a query with a mid-frequency word ("system": a third of the chunks) spent
100 ms in it. Here each term's postings are packed arrays, and BM25 is a handful of
vector operations over them: Lucene's BM25 to the last float bit (`lucene_bm25.py`,
so both stores rank alike), with N and the average length over every chunk in the file,
as one Elasticsearch index counts them; a few milliseconds a query.

- `term_postings`: one row per (term, document), its `data` the document's chunks that
  hold the term as POSTING records (row id, term frequency, chunk length in terms,
  available), plus the tenant and dataset so a search filters rows in SQL before
  reading any blob. A write re-derives the rows of each document it touched from the
  analyzed text FTS5 already stores (`chunk_terms`), in the same transaction, so the
  postings never disagree with the chunks. Documents are the unit because writes are:
  a parse replaces a document whole.
- `term_documents`: each document's chunk and term counts, and `term_totals` their sums
  (N and the total length BM25 needs), kept by deltas in the same transaction.

FTS5 still serves `list_chunks`' keyword filter (an AND match within one document).
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from backend.search import lucene_bm25 as lucene

SCHEMA = """
CREATE TABLE IF NOT EXISTS term_postings (
    term TEXT NOT NULL,
    document_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    chunk_count INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (term, document_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS term_postings_by_document ON term_postings (document_id);
CREATE TABLE IF NOT EXISTS term_documents (
    document_id TEXT PRIMARY KEY,
    chunks INTEGER NOT NULL,
    tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS term_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    chunks INTEGER NOT NULL,
    tokens INTEGER NOT NULL
);
"""

POSTING = np.dtype([("id", "<i8"), ("tf", "<u2"), ("length", "<u2"), ("available", "u1")])
LIMIT = np.iinfo(np.uint16).max


def ensure_postings(conn: sqlite3.Connection) -> None:
    """Create the tables; a file written before they existed gets its postings derived
    once, from the analyzed text FTS5 holds."""
    conn.executescript(SCHEMA)
    if conn.execute("SELECT 1 FROM term_totals").fetchone() is None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM term_totals").fetchone() is None:
                conn.execute("INSERT INTO term_totals (id, chunks, tokens) VALUES (1, 0, 0)")
                documents = conn.execute("SELECT DISTINCT document_id FROM chunks").fetchall()
                rebuild(conn, [row[0] for row in documents])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def rebuild(conn: sqlite3.Connection, document_ids: Iterable[str]) -> None:
    """Re-derive the postings of these documents from their chunks as they are now."""
    for document_id in set(document_ids):
        conn.execute("DELETE FROM term_postings WHERE document_id = ?", (document_id,))
        rows = conn.execute(
            "SELECT c.id, c.tenant_id, c.dataset_id, c.available, t.terms "
            "FROM chunks AS c JOIN chunk_terms AS t ON t.rowid = c.id "
            "WHERE c.document_id = ? ORDER BY c.id",
            (document_id,),
        ).fetchall()
        by_term: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
        tokens = 0
        for row_id, _, _, available, text in rows:
            terms = text.split()
            length = min(len(terms), LIMIT)
            tokens += len(terms)
            for term, count in Counter(terms).items():
                by_term[term].append((row_id, min(count, LIMIT), length, available))
        if rows:
            tenant_id, dataset_id = rows[0][1], rows[0][2]
            conn.executemany(
                "INSERT INTO term_postings VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (term, document_id, tenant_id, dataset_id, len(found), packed(found))
                    for term, found in by_term.items()
                ),
            )
        update_totals(conn, document_id, len(rows), tokens)


def packed(postings: list[tuple[int, int, int, int]]) -> bytes:
    return np.array(postings, dtype=POSTING).tobytes()


def update_totals(conn: sqlite3.Connection, document_id: str, chunks: int, tokens: int) -> None:
    old = conn.execute(
        "SELECT chunks, tokens FROM term_documents WHERE document_id = ?", (document_id,)
    ).fetchone() or (0, 0)
    conn.execute(
        "UPDATE term_totals SET chunks = chunks + ?, tokens = tokens + ?",
        (chunks - old[0], tokens - old[1]),
    )
    if chunks:
        conn.execute(
            "INSERT OR REPLACE INTO term_documents VALUES (?, ?, ?)", (document_id, chunks, tokens)
        )
    else:
        conn.execute("DELETE FROM term_documents WHERE document_id = ?", (document_id,))


@dataclass(frozen=True)
class Scope:
    """Which postings rows a search reads: SQL conditions on `term_postings`."""

    conditions: str
    args: tuple[object, ...]


def totals(conn: sqlite3.Connection) -> tuple[int, int]:
    row = conn.execute("SELECT chunks, tokens FROM term_totals").fetchone()
    return (row[0], row[1]) if row else (0, 0)


def document_frequencies(conn: sqlite3.Connection, terms: Sequence[str]) -> dict[str, int]:
    """How many chunks in the whole file hold each term (every tenant's: N is global)."""
    counts = {}
    for term in terms:
        row = conn.execute(
            "SELECT sum(chunk_count) FROM term_postings WHERE term = ?", (term,)
        ).fetchone()
        counts[term] = row[0] or 0
    return counts


@dataclass(frozen=True)
class Statistics:
    """What BM25 needs of the whole file for one query: the chunk count (N), the total
    length, and each query term's chunk count (read once, for the term rule and BM25)."""

    chunks: int
    tokens: int
    frequencies: dict[str, int]


def statistics(conn: sqlite3.Connection, terms: Sequence[str]) -> Statistics:
    chunks, tokens = totals(conn)
    return Statistics(chunks, tokens, document_frequencies(conn, terms))


def bm25_top(
    conn: sqlite3.Connection,
    terms: Sequence[str],
    stats: Statistics,
    scope: Scope,
    available_only: bool,
    top_k: int,
) -> list[tuple[int, float]]:
    """The best `top_k` (row id, BM25) of chunks in `scope` holding any of `terms`, scored
    as Lucene does (`lucene_bm25.py`); ties by row id, i.e. by insertion order, as the
    Elasticsearch store breaks them."""
    if stats.chunks == 0 or top_k <= 0:
        return []
    cache = lucene.norm_cache(lucene.average_length(stats.tokens, stats.chunks))
    ids: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    for term in terms:
        blobs = conn.execute(
            f"SELECT data FROM term_postings WHERE term = ? AND {scope.conditions}",
            (term, *scope.args),
        ).fetchall()
        if not blobs:
            continue
        postings = np.frombuffer(b"".join(row[0] for row in blobs), dtype=POSTING)
        if available_only:
            postings = postings[postings["available"] == 1]
        weight = lucene.weight(stats.frequencies[term], stats.chunks)
        ids.append(postings["id"])
        weights.append(lucene.term_scores(weight, postings["tf"], postings["length"], cache))
    return top_scores(ids, weights, top_k)


def top_scores(ids: list[np.ndarray], weights: list[np.ndarray], top_k: int):
    """Sum each row id's weights over the terms, then the best `top_k`."""
    if not ids:
        return []
    every_id = np.concatenate(ids)
    if len(ids) == 1:
        unique, scores = every_id, weights[0]
    else:
        # Summed in double and rounded to float, as Lucene's disjunctions do: by row id
        # over the ids' span when it is compact (linear), else through a sort.
        low, span = int(every_id.min()), int(every_id.max() - every_id.min()) + 1
        if span <= 8 * every_id.size + 4096:
            summed = np.bincount(every_id - low, weights=np.concatenate(weights), minlength=span)
            unique = np.flatnonzero(summed)
            summed, unique = summed[unique], unique + low
        else:
            unique, inverse = np.unique(every_id, return_inverse=True)
            summed = np.bincount(inverse, weights=np.concatenate(weights), minlength=unique.size)
        scores = summed.astype(np.float32)
    if unique.size > top_k:
        # Scores equal to the k-th best may be cut arbitrarily by argpartition; keep every
        # tie so the row-id tie break below picks the same ones FTS5 would.
        kth = np.partition(scores, unique.size - top_k)[unique.size - top_k]
        keep = scores >= kth
        unique, scores = unique[keep], scores[keep]
    order = np.lexsort((unique, -scores))[:top_k]
    return [(int(unique[i]), float(scores[i])) for i in order]
