"""Filling the Elasticsearch store fast for benchmarks, and cleaning up after.

`bulk_fill` indexes chunks straight into the store's chunk index under one visible
generation and refreshes once at the end: the same documents `replace_document` writes,
without its refresh per request. One document at a time, 100k chunks mean hundreds of
refreshes, each a small segment whose HNSW graph later merges rebuild. In bulk, 100k
chunks (384 dimensions) took 2-2.5 minutes on the shared 2-core VM, generating the
synthetic text included, and 4 under a heavier load.
"""

from __future__ import annotations

from collections.abc import Iterable

from elasticsearch.helpers import async_bulk

from backend.search.elasticsearch_records import source_of
from backend.search.elasticsearch_store import ElasticsearchSearchStore
from backend.search.store import ChunkRecord

GENERATION = "bench"


async def bulk_fill(
    store: ElasticsearchSearchStore, records: Iterable[ChunkRecord], dimension: int
) -> None:
    """Index `records`, whose chunk ids are `c` + their position in the corpus: that
    position is the tie-breaking `seq`, so a second fill continues the first's order."""
    await store.open()
    index = await store.ensure_chunk_index(dimension)
    actions = (
        {
            "_index": index,
            "_id": f"{record.document_id}/{GENERATION}/{record.chunk_id}",
            "_source": source_of(record, GENERATION, int(record.chunk_id[1:])),
        }
        for record in records
    )
    await async_bulk(store.client, actions, chunk_size=1000, request_timeout=120)
    await store.refresh()


async def segment_count(store: ElasticsearchSearchStore, dimension: int) -> int:
    """Segments searched by the vector leg (each has its own HNSW graph)."""
    stats = await store.client.indices.segments(index=store.index_for(dimension))
    shards = next(iter(stats["indices"].values()))["shards"].values()
    return sum(len(copy["segments"]) for copies in shards for copy in copies)


async def drop_indices(store: ElasticsearchSearchStore) -> None:
    """Delete the store's indices by name (deleting by wildcard is refused)."""
    names = list(await store.client.indices.get(index=f"{store.prefix}-*"))
    if names:
        await store.client.indices.delete(index=",".join(names))
