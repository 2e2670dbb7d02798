"""The embedded store's two search legs, each run inside the caller's read transaction.

Both legs apply the whole filter inside the query: the keyword leg as SQL conditions in
the same statement as the FTS5 match, the vector leg by scoring only the matrices of the
tenant's datasets (a dataset has exactly one tenant, enforced on write) and masking rows
by document and availability before taking the top k. So neither leg can return, nor be
crowded out by, chunks the caller may not see.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

from backend.search import embedded_schema as schema
from backend.search.store import ScoredChunk, SearchFilter
from backend.search.vector_cache import VectorCache

RECORD_COLUMNS = ", ".join(f"c.{name.strip()}" for name in schema.COLUMNS.split(","))


def filter_conditions(filter: SearchFilter) -> tuple[list[str], list[Any]] | None:
    """SQL conditions on `chunks AS c` for the filter; None when it matches nothing."""
    conditions, args = ["c.tenant_id = ?"], [filter.tenant_id]
    lists = (("dataset_id", filter.dataset_ids), ("document_id", filter.document_ids))
    for column, values in lists:
        if values is None:
            continue
        if not values:
            return None
        conditions.append(f"c.{column} IN ({schema.placeholders(values)})")
        args.extend(values)
    if filter.available_only:
        conditions.append("c.available = 1")
    return conditions, args


def informative_terms(conn: sqlite3.Connection, terms: Sequence[str]) -> list[str]:
    """The query terms worth matching. FTS5's IDF, log((N - n + 0.5) / (n + 0.5)), is
    floored at 1e-6 for a term in half the chunks or more, so such a term ("the", "的")
    adds nothing to any score, yet matching it walks most of the index: at 100k chunks
    that is most of a query's time. Terms in no chunk match nothing. Both are dropped,
    unless nothing else is left (then the common terms still rank by frequency)."""
    distinct = list(dict.fromkeys(term for term in terms if term))
    if len(distinct) <= 1:
        return distinct
    total = conn.execute("SELECT coalesce(sum(chunk_count), 0) FROM search_datasets")
    chunks = total.fetchone()[0]
    sql = "SELECT term, doc FROM chunk_terms_vocab WHERE term IN ({})"
    counts = dict(conn.execute(sql.format(schema.placeholders(distinct)), distinct).fetchall())
    rare = [term for term in distinct if counts.get(term, 0) > 0 and 2 * counts[term] < chunks]
    return rare or [term for term in distinct if counts.get(term, 0)]


def keyword_hits(
    conn: sqlite3.Connection, terms: Sequence[str], filter: SearchFilter, top_k: int
) -> list[ScoredChunk]:
    """Chunks matching any term, by BM25 (FTS5 ranks by ascending `bm25()`; negated here
    so a higher score is better). The CTE ranks row ids only, so the sort never carries
    the content and vectors of every matching chunk; ties break by row id."""
    where = filter_conditions(filter)
    if where is None or top_k <= 0:
        return []
    match = schema.match_any(informative_terms(conn, terms))
    if not match:
        return []
    conditions, args = where
    rows = conn.execute(
        f"""
        WITH hits AS (
            SELECT c.id AS id, bm25(chunk_terms) AS rank
            FROM chunk_terms CROSS JOIN chunks AS c ON c.id = chunk_terms.rowid
            WHERE chunk_terms MATCH ? AND {" AND ".join(conditions)}
            ORDER BY rank, c.id
            LIMIT ?
        )
        SELECT -hits.rank, {RECORD_COLUMNS}
        FROM hits JOIN chunks AS c ON c.id = hits.id
        ORDER BY hits.rank, hits.id
        """,
        [match, *args, top_k],
    ).fetchall()
    return [ScoredChunk(schema.record_of(row[1:]), float(row[0])) for row in rows]


def searched_datasets(
    conn: sqlite3.Connection, filter: SearchFilter
) -> list[tuple[str, int, int | None]]:
    """(dataset id, version, dimension) of the tenant's datasets the filter allows."""
    conditions, args = ["tenant_id = ?"], [filter.tenant_id]
    if filter.dataset_ids is not None:
        if not filter.dataset_ids:
            return []
        conditions.append(f"dataset_id IN ({schema.placeholders(filter.dataset_ids)})")
        args.extend(filter.dataset_ids)
    if filter.document_ids is not None:
        if not filter.document_ids:
            return []
        conditions.append(
            "dataset_id IN (SELECT dataset_id FROM chunks "
            f"WHERE document_id IN ({schema.placeholders(filter.document_ids)}))"
        )
        args.extend(filter.document_ids)
    return conn.execute(
        "SELECT dataset_id, version, dimension FROM search_datasets "
        f"WHERE {' AND '.join(conditions)} ORDER BY dataset_id",
        args,
    ).fetchall()


def unit_query(vector: np.ndarray) -> np.ndarray:
    query = np.asarray(vector, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("The query vector must be finite and not all zeros")
    return query / norm


def vector_hits(
    conn: sqlite3.Connection,
    cache: VectorCache,
    vector: np.ndarray,
    filter: SearchFilter,
    top_k: int,
) -> list[ScoredChunk]:
    """The `top_k` chunks by exact cosine similarity over the allowed datasets."""
    query = unit_query(vector)
    if top_k <= 0:
        return []
    best: list[tuple[int, float]] = []
    for dataset_id, version, dimension in searched_datasets(conn, filter):
        if dimension is None:
            continue  # no embedded chunks
        if dimension != query.size:
            raise ValueError(
                f"The query vector has {query.size} dimensions; dataset {dataset_id} "
                f"holds {dimension}-dimensional vectors"
            )
        entry = cache.get(conn, dataset_id, version, dimension)
        best += entry.scores(query, filter.document_ids, filter.available_only, top_k)
    best.sort(key=lambda hit: (-hit[1], hit[0]))
    best = best[:top_k]
    records = {}
    for start in range(0, len(best), schema.BATCH):
        ids = [row_id for row_id, _ in best[start : start + schema.BATCH]]
        for row in conn.execute(
            f"SELECT id, {schema.COLUMNS} FROM chunks WHERE id IN ({schema.placeholders(ids)})",
            ids,
        ):
            records[row[0]] = schema.record_of(row[1:])
    return [ScoredChunk(records[row_id], score) for row_id, score in best]
