"""The embedded store's two search legs, each run inside the caller's read transaction.

Both legs apply the whole filter inside the query: the keyword leg as SQL conditions on
the postings rows it reads (tenant, datasets, documents) and the availability flag of
each posting, the vector leg by scoring only the matrices of the
tenant's datasets (a dataset has exactly one tenant, enforced on write) and masking rows
by document and availability before taking the top k. So neither leg can return, nor be
crowded out by, chunks the caller may not see.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np

from backend.search import embedded_postings as postings
from backend.search import embedded_schema as schema
from backend.search.store import ChunkRecord, ScoredChunk, SearchFilter, unit_query
from backend.search.term_statistics import distinct_terms
from backend.search.term_statistics import informative_terms as rule
from backend.search.vector_cache import VectorCache


def postings_scope(filter: SearchFilter) -> postings.Scope | None:
    """The filter as conditions on `term_postings` rows; None when it matches nothing."""
    conditions, args = ["tenant_id = ?"], [filter.tenant_id]
    lists = (("dataset_id", filter.dataset_ids), ("document_id", filter.document_ids))
    for column, values in lists:
        if values is None:
            continue
        if not values:
            return None
        conditions.append(f"{column} IN ({schema.placeholders(values)})")
        args.extend(values)
    return postings.Scope(" AND ".join(conditions), tuple(args))


def records_by_id(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, ChunkRecord]:
    records = {}
    for start in range(0, len(ids), schema.BATCH):
        batch = list(ids[start : start + schema.BATCH])
        for row in conn.execute(
            f"SELECT id, {schema.COLUMNS} FROM chunks WHERE id IN ({schema.placeholders(batch)})",
            batch,
        ):
            records[row[0]] = schema.record_of(row[1:])
    return records


def scored(conn: sqlite3.Connection, best: Sequence[tuple[int, float]]) -> list[ScoredChunk]:
    records = records_by_id(conn, [row_id for row_id, _ in best])
    return [ScoredChunk(records[row_id], score) for row_id, score in best]


def keyword_hits(
    conn: sqlite3.Connection, terms: Sequence[str], filter: SearchFilter, top_k: int
) -> list[ScoredChunk]:
    """Chunks holding any of the informative terms, by BM25 (higher is better), from the
    postings (`backend/search/embedded_postings.py`); ties break by row id."""
    scope = postings_scope(filter)
    if scope is None or top_k <= 0:
        return []
    distinct = distinct_terms(terms)
    stats = postings.statistics(conn, distinct)
    wanted = rule(distinct, stats.frequencies, stats.chunks)
    if not wanted:
        return []
    best = postings.bm25_top(conn, wanted, stats, scope, filter.available_only, top_k)
    return scored(conn, best)


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
    return scored(conn, best[:top_k])
