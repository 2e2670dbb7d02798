"""Search stores for the shared contract suite (tests/test_search_store.py), and records
to fill them with.

`STORE_KINDS` lists the stores the suite runs against: the embedded store, and
Elasticsearch (fresh indices under a unique prefix per test on the node `make test`
starts, deleted after it). `open_store(kind, tmp_path, elasticsearch_url)` yields an empty
store of that kind and closes it after the test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np

from backend.search.elasticsearch_store import ElasticsearchSearchStore
from backend.search.embedded import EmbeddedSearchStore
from backend.search.store import ChunkRecord, SearchStore

STORE_KINDS = ["embedded", "elasticsearch"]


@asynccontextmanager
async def open_store(
    kind: str, tmp_path: Path, elasticsearch_url: str | None = None
) -> AsyncIterator[SearchStore]:
    if kind == "elasticsearch":
        assert elasticsearch_url, "the elasticsearch store needs the node's url"
        prefix = f"sluice-test-{uuid.uuid4().hex[:10]}"
        es_store = ElasticsearchSearchStore(elasticsearch_url, prefix=prefix)
        await es_store.open()
        try:
            yield es_store
        finally:
            # Deleting by wildcard is refused (action.destructive_requires_name).
            names = list(await es_store.client.indices.get(index=f"{prefix}-*"))
            if names:
                await es_store.client.indices.delete(index=",".join(names))
            await es_store.close()
        return
    if kind != "embedded":
        raise ValueError(f"unknown search store kind {kind}")
    store = EmbeddedSearchStore(tmp_path / "search.sqlite3", vector_cache_bytes=64 * 1024 * 1024)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def unit(values: Sequence[float]) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def chunk(
    chunk_id: str,
    content: str,
    *,
    tenant: str = "alice",
    dataset: str = "ds-a",
    document: str = "doc-a",
    vector: Sequence[float] | np.ndarray | None = None,
    available: bool = True,
    keywords: Sequence[str] = (),
    questions: Sequence[str] = (),
) -> ChunkRecord:
    return ChunkRecord(
        chunk_id=chunk_id,
        tenant_id=tenant,
        dataset_id=dataset,
        document_id=document,
        document_name=f"{document}.txt",
        content=content,
        important_keywords=tuple(keywords),
        questions=tuple(questions),
        positions=((1, 10, 20, 30, 40),),
        available=available,
        token_count=len(content.split()),
        vector=None if vector is None else np.asarray(vector, dtype=np.float32),
        create_time=1_700_000_000.0,
    )
