"""The Elasticsearch store's write path: index creation, the hidden-generations list,
bulk indexing, deletes, and the `SearchStore` write methods built from them.

Kept apart from the reads (`elasticsearch_store.py`) because this is where the atomic
re-parse lives: chunks are stored under `{document}/{generation}/{chunk}`, and every read
excludes the generations listed in one `{prefix}-live` document. `replace_document`
hides a fresh generation, indexes the new chunks under it (refreshed), then ONE update
shows it and hides the old generations, then deletes those (refreshed) and forgets them,
so a search sees all the old chunks or all the new. `ElasticsearchWrites` is a mixin:
`ElasticsearchSearchStore` supplies the client, the index names and `open()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    BadRequestError,
    ConflictError,
    NotFoundError,
    TransportError,
)
from elasticsearch.helpers import async_bulk

from backend.search import elasticsearch_queries as q
from backend.search.elasticsearch_client import (
    ElasticsearchConnection,
    is_outage,
    unavailable_reason,
)
from backend.search.elasticsearch_records import record_of, source_of
from backend.search.store import ChunkRecord, ChunkUpdate, SearchStoreUnavailable

T = TypeVar("T")
SEARCH_OPTIONS = {"ignore_unavailable": True, "allow_no_indices": True}
DELETE_PAGE = 1000


def opened(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Open the store (create the live index) on first use, as the embedded store does;
    once, however many calls arrive together (a second opener would find the index
    created but its shard maybe not yet started, and fail reading it). A cluster that
    cannot serve (no node answers once the client's retries are spent, credentials or
    TLS refused, no shard copy available) raises `SearchStoreUnavailable` saying why."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        try:
            if not self.opened:
                async with self.open_lock:
                    if not self.opened:
                        await self.open()
            return await method(self, *args, **kwargs)
        except (TransportError, ApiError) as exc:
            if not is_outage(exc):
                raise
            raise SearchStoreUnavailable(unavailable_reason(exc)) from exc

    return wrapper


class ElasticsearchWrites:
    client: AsyncElasticsearch
    connection: ElasticsearchConnection
    prefix: str
    live_index: str
    pattern: str
    ready: set[str]
    opened: bool
    open_lock: asyncio.Lock

    async def open(self) -> None:
        raise NotImplementedError

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
            # Created a moment ago by another task or process: its primary shard may not
            # be started yet, and a read of it would fail with 503 until it is.
            await self.client.cluster.health(index=name, wait_for_status="yellow")
        self.ready.add(name)

    async def ensure_chunk_index(self, dimension: int) -> str:
        name = self.index_for(dimension)
        settings = {**q.chunk_index_settings(), **self.connection.index_settings()}
        await self.create_index(name, settings=settings, mappings=q.chunk_mapping(dimension))
        return name

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

    async def index_records(
        self,
        records: Sequence[ChunkRecord],
        generations: dict[str, str],
        order: Sequence[int] | None = None,
    ) -> None:
        """Bulk-index `records`, each under its document's generation, refreshed. `order`
        gives each record's `seq` (document order, and the tie-break of equal scores);
        by default the time of indexing, so later chunks sort after earlier ones."""
        base = time.time_ns()
        actions = []
        for offset, record in enumerate(records):
            generation = generations[record.document_id]
            seq = base + offset if order is None else order[offset]
            source = source_of(record, generation, seq)
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

    async def find_hit(self, document_id: str | None, chunk_id: str) -> dict[str, Any] | None:
        clauses: list[dict[str, Any]] = [{"term": {"chunk_id": chunk_id}}]
        if document_id is not None:
            clauses.append({"term": {"document_id": document_id}})
        response = await self.client.search(
            index=self.pattern, query=q.scoped(clauses, self.live_index), size=1, **SEARCH_OPTIONS
        )
        hits = response["hits"]["hits"]
        return hits[0] if hits else None

    # -- writes --------------------------------------------------------------------------
    @opened
    async def replace_document(
        self,
        document_id: str,
        records: Sequence[ChunkRecord],
        *,
        order: Sequence[int] | None = None,
    ) -> None:
        """The protocol's atomic replace; `order` as in `index_records` (the reindex
        passes the embedded store's row ids, so equal scores break ties as they did)."""
        strangers = {r.document_id for r in records} - {document_id}
        if strangers:
            raise ValueError(f"replace_document({document_id}) got chunks of {strangers}")
        generation = uuid.uuid4().hex
        await self.set_hidden([generation], [])
        await self.index_records(records, {document_id: generation}, order)
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
