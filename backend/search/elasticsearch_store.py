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
  another dimension is refused, as on the embedded store).
- **Atomic re-parse by generations.** Each chunk is stored under
  `{document}/{generation}/{chunk}` and every read excludes the generations listed in one
  `{prefix}-live` document (a `terms` lookup, fetched realtime at query time).
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

import contextlib
import dataclasses
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from elasticsearch import AsyncElasticsearch, BadRequestError, ConflictError, NotFoundError
from elasticsearch.helpers import async_bulk

from backend.search import elasticsearch_queries as q
from backend.search.analyzer import analyze
from backend.search.elasticsearch_records import record_of, source_of, unit_query
from backend.search.store import ChunkPage, ChunkRecord, ChunkUpdate, ScoredChunk, SearchFilter

T = TypeVar("T")
SEARCH_OPTIONS = {"ignore_unavailable": True, "allow_no_indices": True}
MIXED_READ_RETRIES = 5
DELETE_PAGE = 1000


def opened(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Open the store (create the live index) on first use, as the embedded store does."""

    @functools.wraps(method)
    async def wrapper(self: ElasticsearchSearchStore, *args: Any, **kwargs: Any) -> T:
        if not self.opened:
            await self.open()
        return await method(self, *args, **kwargs)

    return wrapper


class ElasticsearchSearchStore:
    def __init__(self, url: str, *, prefix: str = "sluice", request_timeout: float = 30) -> None:
        self.client = AsyncElasticsearch(url, request_timeout=request_timeout)
        self.prefix = prefix
        self.live_index = f"{prefix}-live"
        self.pattern = f"{prefix}-chunks-*"
        self.ready: set[str] = set()
        self.opened = False

    def index_for(self, dimension: int) -> str:
        return f"{self.prefix}-chunks-d{dimension}"

    # -- plumbing ------------------------------------------------------------------------
    async def create_index(self, name: str, **body: Any) -> None:
        if name in self.ready:
            return
        try:
            await self.client.indices.create(index=name, **body)
        except BadRequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
        self.ready.add(name)

    async def open(self) -> None:
        await self.create_index(self.live_index, mappings=q.live_mapping())
        await self.set_hidden([], [])
        self.opened = True

    async def close(self) -> None:
        await self.client.close()

    async def ensure_chunk_index(self, dimension: int) -> str:
        name = self.index_for(dimension)
        await self.create_index(
            name, settings=q.chunk_index_settings(), mappings=q.chunk_mapping(dimension)
        )
        return name

    async def refresh(self) -> None:
        await self.client.indices.refresh(index=self.pattern, **SEARCH_OPTIONS)

    async def set_hidden(self, hide: Sequence[str], show: Sequence[str]) -> None:
        """Add `hide` to and remove `show` from the hidden generations in one write, with
        optimistic concurrency (another process may be re-parsing too). No script: the
        test distribution of Elasticsearch has no Painless."""
        while True:
            try:
                current = await self.client.get(index=self.live_index, id=q.HIDDEN_DOC)
            except NotFoundError:
                with contextlib.suppress(ConflictError):
                    await self.client.create(
                        index=self.live_index, id=q.HIDDEN_DOC, document={"generations": []}
                    )
                continue
            generations = q.hidden_after(current["_source"]["generations"], hide, show)
            try:
                await self.client.index(
                    index=self.live_index,
                    id=q.HIDDEN_DOC,
                    document={"generations": generations},
                    if_seq_no=current["_seq_no"],
                    if_primary_term=current["_primary_term"],
                )
                return
            except ConflictError:
                continue

    async def index_records(self, records: Sequence[ChunkRecord], generations: dict[str, str]):
        """Bulk-index `records`, each under its document's generation, refreshed."""
        base = time.time_ns()
        actions = []
        for offset, record in enumerate(records):
            generation = generations[record.document_id]
            source = source_of(record, generation, base + offset)
            actions.append(
                {
                    "_index": await self.ensure_chunk_index(source["dimension"]),
                    "_id": f"{record.document_id}/{generation}/{record.chunk_id}",
                    "_source": source,
                }
            )
        if actions:
            await async_bulk(self.client, actions, refresh=True)

    async def delete_where(self, clauses: list[dict[str, Any]]) -> int:
        """Delete every chunk matching `clauses` (hidden or not), refreshed; how many were
        visible. Ids are collected by search and deleted in bulk: `_delete_by_query` lives
        in the reindex module, which Elasticsearch's test distribution lacks."""
        query = {"bool": {"filter": clauses}}
        visible = await self.client.count(
            index=self.pattern, query=q.scoped(clauses, self.live_index), **SEARCH_OPTIONS
        )
        while True:  # each round deletes what it found (refreshed), so the next finds the rest
            page = await self.client.search(
                index=self.pattern, query=query, size=DELETE_PAGE, source=False, **SEARCH_OPTIONS
            )
            hits = page["hits"]["hits"]
            actions = [{"_op_type": "delete", "_index": h["_index"], "_id": h["_id"]} for h in hits]
            if actions:
                await async_bulk(self.client, actions, refresh=True, raise_on_error=False)
            if len(hits) < DELETE_PAGE:
                break
        return int(visible["count"])

    # -- writes --------------------------------------------------------------------------
    @opened
    async def replace_document(self, document_id: str, records: Sequence[ChunkRecord]) -> None:
        strangers = {r.document_id for r in records} - {document_id}
        if strangers:
            raise ValueError(f"replace_document({document_id}) got chunks of {strangers}")
        generation = uuid.uuid4().hex
        await self.set_hidden([generation], [])
        await self.index_records(records, {document_id: generation})
        response = await self.client.search(
            index=self.pattern,
            **q.generations_body(document_id, self.live_index, generation),
            **SEARCH_OPTIONS,
        )
        old = [b["key"] for b in response["aggregations"]["generations"]["buckets"]]
        await self.set_hidden(old, [generation])
        if old:
            clauses = [{"term": {"document_id": document_id}}, {"terms": {"generation": old}}]
            await self.delete_where(clauses)
            await self.set_hidden([], old)

    async def live_generations(self, document_ids: Sequence[str]) -> dict[str, str]:
        """Each document's visible generation ("0" for one with no chunks yet)."""
        clauses = [{"terms": {"document_id": list(document_ids)}}]
        body = q.scoped(clauses, self.live_index)
        response = await self.client.search(
            index=self.pattern,
            query=body,
            size=0,
            aggs={
                "docs": {
                    "terms": {"field": "document_id", "size": len(document_ids)},
                    "aggs": {"gen": {"terms": {"field": "generation", "size": 1}}},
                }
            },
            **SEARCH_OPTIONS,
        )
        found = {
            b["key"]: b["gen"]["buckets"][0]["key"]
            for b in response.get("aggregations", {}).get("docs", {}).get("buckets", [])
        }
        return {doc: found.get(doc, "0") for doc in document_ids}

    @opened
    async def add_chunks(self, records: Sequence[ChunkRecord]) -> None:
        if not records:
            return
        generations = await self.live_generations(sorted({r.document_id for r in records}))
        await self.index_records(records, generations)
        # Upsert by chunk id: drop other stored copies of these ids.
        new_ids = [f"{r.document_id}/{generations[r.document_id]}/{r.chunk_id}" for r in records]
        await self.delete_where(
            [
                {"terms": {"chunk_id": [r.chunk_id for r in records]}},
                {"bool": {"must_not": [{"ids": {"values": new_ids}}]}},
            ]
        )

    async def find_hit(self, document_id: str | None, chunk_id: str) -> dict[str, Any] | None:
        clauses: list[dict[str, Any]] = [{"term": {"chunk_id": chunk_id}}]
        if document_id is not None:
            clauses.append({"term": {"document_id": document_id}})
        response = await self.client.search(
            index=self.pattern, query=q.scoped(clauses, self.live_index), size=1, **SEARCH_OPTIONS
        )
        hits = response["hits"]["hits"]
        return hits[0] if hits else None

    @opened
    async def update_chunk(
        self, document_id: str, chunk_id: str, update: ChunkUpdate
    ) -> ChunkRecord | None:
        hit = await self.find_hit(document_id, chunk_id)
        if hit is None:
            return None
        old = record_of(hit["_source"])
        given = {
            "content": update.content,
            "important_keywords": None
            if update.important_keywords is None
            else tuple(update.important_keywords),
            "questions": None if update.questions is None else tuple(update.questions),
            "available": update.available,
            "vector": update.vector,
        }
        changed = dataclasses.replace(
            old, **{name: value for name, value in given.items() if value is not None}
        )
        source = source_of(changed, hit["_source"]["generation"], hit["_source"]["seq"])
        index = await self.ensure_chunk_index(source["dimension"])
        if index != hit["_index"]:
            await self.client.delete(index=hit["_index"], id=hit["_id"])
        await self.client.index(index=index, id=hit["_id"], document=source, refresh=True)
        return changed

    @opened
    async def delete_chunks(self, document_id: str, chunk_ids: Sequence[str]) -> int:
        if not chunk_ids:
            return 0
        return await self.delete_where(
            [{"term": {"document_id": document_id}}, {"terms": {"chunk_id": list(chunk_ids)}}]
        )

    @opened
    async def delete_document(self, document_id: str) -> int:
        return await self.delete_where([{"term": {"document_id": document_id}}])

    @opened
    async def delete_dataset(self, dataset_id: str) -> int:
        return await self.delete_where([{"term": {"dataset_id": dataset_id}}])

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
        _, by_vector = await self.search_legs([], vector, filter, top_k)
        return by_vector

    @opened
    async def search_legs(
        self, terms: Sequence[str], vector: np.ndarray | None, filter: SearchFilter, top_k: int
    ) -> tuple[list[ScoredChunk], list[ScoredChunk]]:
        query = None if vector is None else unit_query(vector)
        clauses = q.filter_clauses(filter)
        terms = [term for term in dict.fromkeys(terms) if term]
        if clauses is None or top_k <= 0:
            return [], []
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
        for _ in range(MIXED_READ_RETRIES):
            keyword, by_vector, generations = await self.run_legs(searches, bool(terms), query)
            if all(len(seen) == 1 for seen in generations.values()):
                break
        return keyword, by_vector

    async def run_legs(
        self, searches: list[dict[str, Any]], with_terms: bool, query: np.ndarray | None
    ) -> tuple[list[ScoredChunk], list[ScoredChunk], dict[str, set[str]]]:
        """The legs, and the generations each document's hits came from."""
        responses = iter((await self.client.msearch(searches=searches))["responses"])
        keyword: list[ScoredChunk] = []
        by_vector: list[ScoredChunk] = []
        everything: list[dict[str, Any]] = []
        if with_terms:
            hits = checked(next(responses))["hits"]["hits"]
            keyword = [ScoredChunk(record_of(h["_source"]), float(h["_score"])) for h in hits]
            everything += hits
        if query is not None:
            knn = checked(next(responses))
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


def checked(response: dict[str, Any]) -> dict[str, Any]:
    if "error" in response:
        raise RuntimeError(f"Elasticsearch search failed: {response['error']}")
    return response
