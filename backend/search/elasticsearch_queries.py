"""Pure builders of the Elasticsearch store's mappings and request bodies (no I/O), so each
body is pinned by an exact test (`tests/test_elasticsearch_queries.py`).

- **Keyword field.** `search_terms` holds `analyzed_text` of a chunk's content, important
  keywords and questions (exactly what the embedded store gives FTS5) under the
  `whitespace` analyzer, so Elasticsearch counts the analyzer's terms and nothing else.
  Its similarity is Lucene's BM25 with FTS5's parameters (k1 1.2, b 0.75). Searches run
  as `dfs_query_then_fetch`, so N, n and the average length are counted over every
  searched index and shard, as FTS5 counts its whole table. What still differs (see
  docs/search.md): Lucene's IDF is log(1 + (N - n + 0.5) / (n + 0.5)) where FTS5's is
  log((N - n + 0.5) / (n + 0.5)) floored near zero, Lucene leaves out the constant
  (k1 + 1) factor, and stores lengths in one byte (exact up to about 40 terms). A
  scripted similarity could copy FTS5 exactly, but Elasticsearch's test distribution
  (the node `make test` runs) has no Painless.
- **Visibility.** Every read excludes the generations listed in one document of the
  `{prefix}-live` index (a `terms` lookup, resolved at query time by a realtime get): a
  re-parse's new chunks are hidden until they are all indexed, then one update hides the
  old ones instead (see `elasticsearch_store.py`).
- **Filters inside both legs.** Tenant, datasets, documents and availability are `filter`
  clauses of the BM25 query and of `knn.filter`, so another tenant's chunks can neither
  appear nor crowd the caller's out of the top k.
- **Vectors only where fusion needs them.** The knn leg's hits leave `vector` out of
  `_source`: fusion takes their cosine from the score, and 384 floats as JSON are most
  of a hit's bytes. The keyword leg keeps it, since a keyword hit the knn leg did not
  return gets its cosine from its vector (fetching those few by `mget` after the search
  measured slower than carrying them: a second round trip, and the same `_source`
  parse on the node).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.search.store import SearchFilter

HIDDEN_DOC = "hidden"
MAX_CANDIDATES = 10_000
WITHOUT_VECTOR = {"excludes": ["vector"]}


def chunk_index_settings() -> dict[str, Any]:
    return {
        "number_of_shards": 1,
        "number_of_replicas": 0,
        "similarity": {"bm25_sluice": {"type": "BM25", "k1": 1.2, "b": 0.75}},
    }


def chunk_mapping(dimension: int) -> dict[str, Any]:
    """The mapping of `{prefix}-chunks-d{dimension}`; dimension 0 holds chunks without a
    vector (no `vector` field)."""
    unindexed_text = {"type": "text", "index": False}
    properties: dict[str, Any] = {
        "chunk_id": {"type": "keyword"},
        "tenant_id": {"type": "keyword"},
        "dataset_id": {"type": "keyword"},
        "document_id": {"type": "keyword"},
        "generation": {"type": "keyword"},
        "document_name": {"type": "keyword", "index": False},
        "content": unindexed_text,
        "search_terms": {"type": "text", "analyzer": "whitespace", "similarity": "bm25_sluice"},
        "important_keywords": {"type": "keyword"},
        "questions": unindexed_text,
        "positions": {"type": "integer", "index": False, "doc_values": False},
        "available": {"type": "boolean"},
        "token_count": {"type": "integer", "index": False},
        "create_time": {"type": "double", "index": False},
        "seq": {"type": "long"},
        "dimension": {"type": "integer"},
    }
    if dimension:
        properties["vector"] = {
            "type": "dense_vector",
            "dims": dimension,
            "index": True,
            "similarity": "cosine",
            # Unquantized HNSW: 8.19 defaults to int8/bbq quantization, whose scores would
            # differ from the embedded store's exact cosine.
            "index_options": {"type": "hnsw"},
        }
    return {"dynamic": "strict", "properties": properties}


def live_mapping() -> dict[str, Any]:
    return {"dynamic": False, "properties": {}}


def visible(live_index: str) -> dict[str, Any]:
    """Matches generations listed as hidden (used under `must_not`)."""
    lookup = {"index": live_index, "id": HIDDEN_DOC, "path": "generations"}
    return {"terms": {"generation": lookup}}


def filter_clauses(filter: SearchFilter) -> list[dict[str, Any]] | None:
    """The filter as `filter` clauses; None when it matches nothing."""
    clauses: list[dict[str, Any]] = [{"term": {"tenant_id": filter.tenant_id}}]
    for field, values in (("dataset_id", filter.dataset_ids), ("document_id", filter.document_ids)):
        if values is None:
            continue
        if not values:
            return None
        clauses.append({"terms": {field: list(values)}})
    if filter.available_only:
        clauses.append({"term": {"available": True}})
    return clauses


def scoped(clauses: list[dict[str, Any]], live_index: str) -> dict[str, Any]:
    """A bool query of `clauses` over visible chunks only."""
    return {"bool": {"filter": clauses, "must_not": [visible(live_index)]}}


def keyword_body(
    terms: Sequence[str], clauses: list[dict[str, Any]], live_index: str, top_k: int
) -> dict[str, Any]:
    query = scoped(clauses, live_index)
    query["bool"]["must"] = [{"match": {"search_terms": {"query": " ".join(terms)}}}]
    return {
        "query": query,
        "size": top_k,
        "sort": [{"_score": "desc"}, {"seq": "asc"}],
        "track_scores": True,
        "track_total_hits": False,
    }


def frequency_searches(
    header: dict[str, Any], terms: Sequence[str], live_index: str
) -> list[dict[str, Any]]:
    """`_msearch` lines counting the visible chunks of the whole store (every tenant's,
    as BM25's IDF counts them), then those holding each term: the statistics
    `term_statistics.informative_terms` decides on."""
    searches: list[dict[str, Any]] = []
    for term in [None, *terms]:
        clauses = [] if term is None else [{"term": {"search_terms": term}}]
        body = {"size": 0, "track_total_hits": True, "query": scoped(clauses, live_index)}
        searches += [header, body]
    return searches


def knn_body(
    vector: Sequence[float], clauses: list[dict[str, Any]], live_index: str, top_k: int
) -> dict[str, Any]:
    """Approximate (HNSW) nearest neighbours with the filter applied during the graph
    search; `num_candidates` is twice top_k (at least 100, at most Elasticsearch's cap),
    which keeps recall near exact at the sizes retrieval asks for. Hits come without
    their vectors (the score is their cosine)."""
    k = min(top_k, MAX_CANDIDATES)
    return {
        "knn": {
            "field": "vector",
            "query_vector": list(vector),
            "k": k,
            "num_candidates": min(max(2 * k, 100), MAX_CANDIDATES),
            "filter": scoped(clauses, live_index),
        },
        "size": k,
        "_source": WITHOUT_VECTOR,
        "track_total_hits": False,
    }


def dimensions_body(clauses: list[dict[str, Any]], live_index: str) -> dict[str, Any]:
    """The vector dimensions among the chunks a filter allows (to refuse a query vector of
    another dimension, as the embedded store does)."""
    query = scoped([*clauses, {"range": {"dimension": {"gt": 0}}}], live_index)
    return {
        "query": query,
        "size": 0,
        "aggs": {"dimensions": {"terms": {"field": "dimension", "size": 16}}},
    }


def document_body(
    document_id: str,
    live_index: str,
    *,
    terms: Sequence[str] = (),
    chunk_id: str | None = None,
    offset: int = 0,
    limit: int = 30,
) -> dict[str, Any]:
    """A document's visible chunks in indexing order; `terms` must all match."""
    clauses: list[dict[str, Any]] = [{"term": {"document_id": document_id}}]
    if chunk_id is not None:
        clauses.append({"term": {"chunk_id": chunk_id}})
    if terms:
        clauses.append({"match": {"search_terms": {"query": " ".join(terms), "operator": "and"}}})
    return {
        "query": scoped(clauses, live_index),
        "sort": [{"seq": "asc"}],
        "from": max(offset, 0),
        "size": max(limit, 0),
        "track_total_hits": True,
    }


def generations_body(document_id: str, live_index: str, exclude: str) -> dict[str, Any]:
    """Every generation of a document's chunks other than `exclude`, hidden or not."""
    return {
        "query": {
            "bool": {
                "filter": [{"term": {"document_id": document_id}}],
                "must_not": [{"term": {"generation": exclude}}],
            }
        },
        "size": 0,
        "aggs": {"generations": {"terms": {"field": "generation", "size": 1000}}},
    }


def hidden_after(current: Sequence[str], hide: Sequence[str], show: Sequence[str]) -> list[str]:
    """The hidden generations after hiding `hide` and showing `show`."""
    kept = [g for g in current if g not in set(show)]
    return kept + [g for g in dict.fromkeys(hide) if g not in set(kept)]
