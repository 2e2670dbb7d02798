"""The Elasticsearch search store, for deployments that outgrow one machine.

- **One index per embedding dimension** (`{prefix}-chunks-d384`, `-d1024`, ...; chunks
  without a vector in `-d0`). A `dense_vector` field has one fixed `dims`, and datasets
  searched together share one embedding model, so the vector leg queries exactly one
  index; the keyword leg and every read by document span `{prefix}-chunks-*`. An index
  per dataset would mean thousands of small indices (shards cost heap on every node);
  one index per model keeps the shard count flat and lets tenant/dataset filters, which
  sit inside both legs, do the scoping.
- **Scores.** Keyword: Lucene BM25 (k1 1.2, b 0.75, as FTS5) over the same analyzer
  terms, statistics over all searched shards (`elasticsearch_queries.py` says what
  still differs from FTS5). Vector: Elasticsearch's cosine `_score` is (1 + cos) / 2; mapped back
  to cos, it equals the embedded store's exact cosine within float32 rounding.
- **Both legs in one round trip.** `search_legs` sends one `_msearch`: the BM25 query, the
  `knn` search and a size-0 count of the dimensions the filter reaches (a query vector of
  another dimension is refused, as on the embedded store). The vector leg's records
  come with `vector=None` (its score is the cosine fusion needs); the keyword leg's
  carry their vectors. Responses are parsed with orjson: a hit's vector is hundreds of
  JSON floats, which the standard library parses six times slower.
- **Atomic re-parse by generations** (the write path: `elasticsearch_writes.py`). Each
  chunk is stored under `{document}/{generation}/{chunk}` and every read excludes the
  generations listed in one `{prefix}-live` document (a `terms` lookup, fetched realtime
  at query time).
  `replace_document` hides a fresh generation, indexes the new chunks under it (refreshed),
  then ONE update shows it and hides the old generations, then deletes those (refreshed)
  and forgets them. A search sees all the old chunks or all the new. The two legs of one
  `_msearch` resolve the lookup separately; if a re-parse lands between them, a document
  shows two generations in the result, and `search_legs` asks again.
- **Searchable when the call returns.** Writes end with a refresh (`refresh=True`:
  ingestion marks a document DONE right after `replace_document`, and `wait_for` would
  stall each write up to the refresh interval).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from elasticsearch import AsyncElasticsearch

from backend.metrics.instruments import SEARCH_SECONDS
from backend.search import elasticsearch_queries as q
from backend.search.analyzer import analyze
from backend.search.elasticsearch_client import (
    ElasticsearchConnection,
    client_of,
    unavailable_reason,
)
from backend.search.elasticsearch_records import record_of
from backend.search.elasticsearch_writes import SEARCH_OPTIONS, ElasticsearchWrites, opened
from backend.search.store import (
    ChunkPage,
    ChunkRecord,
    ScoredChunk,
    SearchFilter,
    SearchStoreUnavailable,
    unit_query,
)
from backend.search.term_statistics import distinct_terms
from backend.search.term_statistics import informative_terms as rule

MIXED_READ_RETRIES = 5


class ElasticsearchSearchStore(ElasticsearchWrites):
    """The reads, and opening/closing; the writes are `ElasticsearchWrites`."""

    def __init__(
        self, connection: ElasticsearchConnection | str, *, prefix: str = "sluice"
    ) -> None:
        """`connection`: nodes, credentials, TLS and index layout (a bare URL: one node,
        no credentials, one shard, no replica)."""
        if isinstance(connection, str):
            connection = ElasticsearchConnection.of_url(connection)
        self.connection = connection
        self.client: AsyncElasticsearch = client_of(connection)
        self.prefix = prefix
        self.live_index = f"{prefix}-live"
        self.pattern = f"{prefix}-chunks-*"
        self.ready: set[str] = set()
        self.opened = False
        self.open_lock = asyncio.Lock()

    async def open(self) -> None:
        await self.create_index(
            self.live_index,
            settings={**self.connection.index_settings(), "number_of_shards": 1},
            mappings=q.live_mapping(),
        )
        await self.set_hidden([], [])
        self.opened = True

    async def check(self, within: float) -> None:
        """Readiness: one search of Sluice's indices (what the app needs the user to be
        allowed), one try per node (one node gone is no outage), `within` seconds each
        (readiness abandons the whole after that anyway); raises `SearchStoreUnavailable`
        saying why."""
        retries = len(self.connection.hosts) - 1
        client = self.client.options(request_timeout=within, max_retries=retries)
        try:
            await client.search(index=self.pattern, size=0, **SEARCH_OPTIONS)
        except Exception as exc:
            raise SearchStoreUnavailable(unavailable_reason(exc)) from exc

    async def close(self) -> None:
        await self.client.close()

    async def refresh(self) -> None:
        await self.client.indices.refresh(index=self.pattern, **SEARCH_OPTIONS)

    # -- reads ---------------------------------------------------------------------------
    @opened
    async def get_chunk(self, chunk_id: str, document_id: str | None = None) -> ChunkRecord | None:
        hit = await self.find_hit(document_id, chunk_id)
        return None if hit is None else record_of(hit["_source"])

    @opened
    async def list_chunks(
        self,
        document_id: str,
        *,
        keywords: str = "",
        chunk_id: str | None = None,
        offset: int = 0,
        limit: int = 30,
    ) -> ChunkPage:
        body = q.document_body(
            document_id,
            self.live_index,
            terms=analyze(keywords),
            chunk_id=chunk_id,
            offset=offset,
            limit=limit,
        )
        response = await self.client.search(index=self.pattern, **body, **SEARCH_OPTIONS)
        hits = response["hits"]
        return ChunkPage(hits["total"]["value"], [record_of(h["_source"]) for h in hits["hits"]])

    @opened
    async def count_chunks(self, document_id: str) -> int:
        query = q.scoped([{"term": {"document_id": document_id}}], self.live_index)
        response = await self.client.count(index=self.pattern, query=query, **SEARCH_OPTIONS)
        return int(response["count"])

    async def keyword_search(
        self, terms: Sequence[str], filter: SearchFilter, top_k: int
    ) -> list[ScoredChunk]:
        keyword, _ = await self.search_legs(terms, None, filter, top_k)
        return keyword

    async def vector_search(
        self, vector: np.ndarray, filter: SearchFilter, top_k: int
    ) -> list[ScoredChunk]:
        """As the protocol says, but the records come without their vectors."""
        _, by_vector = await self.search_legs([], vector, filter, top_k)
        return by_vector

    @opened
    async def search_legs(
        self, terms: Sequence[str], vector: np.ndarray | None, filter: SearchFilter, top_k: int
    ) -> tuple[list[ScoredChunk], list[ScoredChunk]]:
        query = None if vector is None else unit_query(vector)
        clauses = q.filter_clauses(filter)
        if clauses is None or top_k <= 0:
            return [], []
        terms = await self.informative_terms(terms)
        searches: list[dict[str, Any]] = []
        if terms:
            header = {
                "index": self.pattern,
                "search_type": "dfs_query_then_fetch",
                **SEARCH_OPTIONS,
            }
            searches += [header, q.keyword_body(terms, clauses, self.live_index, top_k)]
        if query is not None:
            header = {"index": self.index_for(query.size), **SEARCH_OPTIONS}
            searches += [header, q.knn_body(query.tolist(), clauses, self.live_index, top_k)]
            searches += [
                {"index": self.pattern, **SEARCH_OPTIONS},
                q.dimensions_body(clauses, self.live_index),
            ]
        if not searches:
            return [], []
        started = time.perf_counter()
        for _ in range(MIXED_READ_RETRIES):
            keyword, by_vector, generations = await self.run_legs(searches, bool(terms), query)
            if all(len(seen) == 1 for seen in generations.values()):
                break
        SEARCH_SECONDS.labels("elasticsearch", "legs").observe(time.perf_counter() - started)
        return keyword, by_vector

    async def informative_terms(self, terms: Sequence[str]) -> list[str]:
        """The terms the keyword leg matches, by the rule both stores share; the counts
        take one `_msearch` before the legs' (a question of one term needs none)."""
        distinct = distinct_terms(terms)
        if len(distinct) <= 1:
            return distinct
        header = {"index": self.pattern, **SEARCH_OPTIONS}
        searches = q.frequency_searches(header, distinct, self.live_index)
        responses = (await self.client.msearch(searches=searches))["responses"]
        chunks, *counts = (int(checked(r)["hits"]["total"]["value"]) for r in responses)
        return rule(distinct, dict(zip(distinct, counts, strict=True)), chunks)

    async def run_legs(
        self, searches: list[dict[str, Any]], with_terms: bool, query: np.ndarray | None
    ) -> tuple[list[ScoredChunk], list[ScoredChunk], dict[str, set[str]]]:
        """The legs, and the generations each document's hits came from."""
        responses = iter((await self.client.msearch(searches=searches))["responses"])
        keyword: list[ScoredChunk] = []
        by_vector: list[ScoredChunk] = []
        everything: list[dict[str, Any]] = []
        if with_terms:
            hits = took(checked(next(responses)), "keyword")["hits"]["hits"]
            keyword = [ScoredChunk(record_of(h["_source"]), float(h["_score"])) for h in hits]
            everything += hits
        if query is not None:
            knn = took(checked(next(responses)), "vector")
            dimensions = checked(next(responses))["aggregations"]["dimensions"]["buckets"]
            other = [b["key"] for b in dimensions if b["key"] != query.size]
            if other:
                raise ValueError(
                    f"The query vector has {query.size} dimensions; the searched datasets "
                    f"hold {other[0]}-dimensional vectors"
                )
            by_vector = [
                ScoredChunk(record_of(h["_source"]), 2.0 * float(h["_score"]) - 1.0)
                for h in knn["hits"]["hits"]
            ]
            everything += knn["hits"]["hits"]
        generations: dict[str, set[str]] = {}
        for hit in everything:
            source = hit["_source"]
            generations.setdefault(source["document_id"], set()).add(source["generation"])
        return keyword, by_vector, generations


def took(response: dict[str, Any], leg: str) -> dict[str, Any]:
    """Observe the leg's own time on the node (`took`, in ms) and pass the response on."""
    SEARCH_SECONDS.labels("elasticsearch", leg).observe(response.get("took", 0) / 1000)
    return response


def checked(response: dict[str, Any]) -> dict[str, Any]:
    if "error" in response:
        raise RuntimeError(f"Elasticsearch search failed: {response['error']}")
    return response
