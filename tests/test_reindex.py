"""`python -m backend reindex --to elasticsearch`: every chunk of the embedded store, with
its vector, moved to Elasticsearch, found there by the same searches, without
duplicates when run again, and the embedded store left as it was."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np

from backend.search.analyzer import query_terms
from backend.search.elasticsearch_store import ElasticsearchSearchStore
from backend.search.embedded import EmbeddedSearchStore
from backend.search.reindex import reindex
from backend.search.store import SearchStore
from tests.support.parity_corpus import ParityCorpus, parity_corpus
from tests.support.search_stores import chunk, open_store


async def fill(store: SearchStore, corpus: ParityCorpus) -> None:
    for document_id, records in corpus.documents.items():
        await store.replace_document(document_id, records)
    # A chunk added by hand after the parse (not contiguous with its document's others).
    await store.add_chunks([chunk("doc-a1-extra", "added by hand", document="doc-a1")])


async def snapshot(store: SearchStore, corpus: ParityCorpus) -> dict[str, object]:
    """What a user sees: every document's chunks, and each query's hits."""
    seen: dict[str, object] = {}
    for document_id in corpus.documents:
        page = await store.list_chunks(document_id, limit=1000)
        seen[document_id] = [
            (r, None if r.vector is None else r.vector.tobytes()) for r in page.chunks
        ]
    for filter in corpus.filters:
        # One term per query: multi-term rankings may differ between the stores at
        # near-ties (test_search_parity.py), one-term rankings never.
        for term in {t for q in corpus.keyword_queries for t in query_terms(q)}:
            hits = await store.keyword_search([term], filter, 10)
            seen[f"{filter}/{term}"] = [h.record.chunk_id for h in hits]
        for i, vector in enumerate(corpus.query_vectors):
            hits = await store.vector_search(vector, filter, 10)
            seen[f"{filter}/v{i}"] = [h.record.chunk_id for h in hits]  # scores: test_search_parity
    return seen


async def test_reindex_moves_every_chunk_and_a_rerun_duplicates_nothing(
    tmp_path: Path, elasticsearch_url: str
) -> None:
    corpus = parity_corpus(seed=5)
    async with (
        open_store("embedded", tmp_path) as source,
        open_store("elasticsearch", tmp_path, elasticsearch_url) as target,
    ):
        assert isinstance(source, EmbeddedSearchStore)
        await fill(source, corpus)
        before = await snapshot(source, corpus)
        chunks = sum(len(records) for records in corpus.documents.values()) + 1
        with_vectors = sum(
            r.vector is not None for records in corpus.documents.values() for r in records
        )
        for _ in range(2):
            report = await reindex(source, target, concurrency=3)
            assert (report.documents, report.chunks) == (len(corpus.documents), chunks)
            assert report.embedded_chunks == with_vectors
            assert await snapshot(target, corpus) == before
        assert await snapshot(source, corpus) == before  # the embedded store is intact
        # No copies left behind anywhere (hidden or not) by the second run.
        assert isinstance(target, ElasticsearchSearchStore)
        await target.refresh()
        stored = await target.client.count(index=target.pattern)
        assert stored["count"] == chunks


async def test_reindex_command(tmp_path: Path, elasticsearch_url: str) -> None:
    corpus = parity_corpus(seed=6)
    database = tmp_path / "search.sqlite3"
    source = EmbeddedSearchStore(database)
    await fill(source, corpus)
    await source.close()
    prefix = f"sluice-test-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "SEARCH_DB_PATH": str(database),
        "ELASTICSEARCH_URL": elasticsearch_url,
        "ELASTICSEARCH_INDEX_PREFIX": prefix,
    }
    command = [sys.executable, "-m", "backend", "reindex", "--to", "elasticsearch"]
    result = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=120
    )
    target = ElasticsearchSearchStore(elasticsearch_url, prefix=prefix)
    try:
        assert result.returncode == 0, result.stderr
        chunks = sum(len(records) for records in corpus.documents.values()) + 1
        assert f"reindexed {len(corpus.documents)} documents, {chunks} chunks" in result.stdout
        assert "SEARCH_STORE=elasticsearch" in result.stdout
        record = await target.get_chunk("doc-a2-01", "doc-a2")
        expected = corpus.documents["doc-a2"][1]
        assert record == expected and record is not None and expected.vector is not None
        assert np.array_equal(record.vector, expected.vector)
    finally:
        names = list(await target.client.indices.get(index=f"{prefix}-*"))
        if names:
            await target.client.indices.delete(index=",".join(names))
        await target.close()
    missing = {**env, "SEARCH_DB_PATH": str(tmp_path / "absent.sqlite3")}
    result = await asyncio.to_thread(
        subprocess.run, command, env=missing, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "nothing to move" in result.stderr
