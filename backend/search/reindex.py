"""Moving a deployment's chunks from the embedded store to Elasticsearch
(`python -m backend reindex --to elasticsearch`), so a user who outgrows one machine
keeps their knowledge bases without re-parsing (and re-embedding) a single document.

- **Document by document, through `replace_document`.** Each document's chunks (with
  their vectors, in document order) are read from the embedded store in one read
  transaction and written with the target's atomic re-parse, each chunk keeping its
  place (its embedded row id becomes its Elasticsearch `seq`, so document order and the
  tie-break between equal scores are as they were). So re-running the command
  is safe: a document already moved is replaced by the same chunks, never duplicated,
  and a run stopped half way is finished by running it again. Large documents are bulk
  indexed in batches of 500 by the Elasticsearch client.
- **The embedded store is only read**, so it stays intact: switching back is a matter
  of setting SEARCH_STORE=embedded again.
- **Checked**: after each document the target's count of its chunks must equal the
  source's, or the run stops saying which document differs.
- Run it with the workers stopped (no parse in flight); a document re-parsed in the
  embedded store after it was moved is moved again by the next run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from backend.search import embedded_schema as schema
from backend.search.elasticsearch_store import ElasticsearchSearchStore
from backend.search.embedded import EmbeddedSearchStore
from backend.search.store import ChunkRecord

CONCURRENT_DOCUMENTS = 4


@dataclass(frozen=True)
class ReindexReport:
    documents: int
    chunks: int
    embedded_chunks: int  # chunks with a vector
    seconds: float

    def summary(self) -> str:
        rate = self.chunks / self.seconds if self.seconds > 0 else 0.0
        return (
            f"reindexed {self.documents} documents, {self.chunks} chunks "
            f"({self.embedded_chunks} with vectors) in {self.seconds:.1f} s ({rate:.0f} chunks/s)"
        )


async def document_ids(store: EmbeddedSearchStore) -> list[str]:
    """Every document with chunks in the embedded store, oldest first."""
    sql = "SELECT document_id FROM chunks GROUP BY document_id ORDER BY min(id)"
    return await store.run(lambda conn: [row[0] for row in conn.execute(sql)], write=False)


async def document_records(
    store: EmbeddedSearchStore, document_id: str
) -> list[tuple[int, ChunkRecord]]:
    """A document's chunks with their row ids, in document order, from one snapshot."""
    sql = f"SELECT id, {schema.COLUMNS} FROM chunks WHERE document_id = ? ORDER BY id"
    return await store.run(
        lambda conn: [
            (row[0], schema.record_of(row[1:])) for row in conn.execute(sql, (document_id,))
        ],
        write=False,
    )


async def reindex(
    source: EmbeddedSearchStore,
    target: ElasticsearchSearchStore,
    *,
    concurrency: int = CONCURRENT_DOCUMENTS,
    progress: Callable[[int, int, int], None] | None = None,
) -> ReindexReport:
    """Copy every document's chunks from `source` to `target`; `progress(done documents,
    all documents, chunks so far)` is called after each document."""
    started = time.perf_counter()
    documents = await document_ids(source)
    totals = {"done": 0, "chunks": 0, "embedded": 0}
    gate = asyncio.Semaphore(max(concurrency, 1))

    async def move(document_id: str) -> None:
        async with gate:
            rows = await document_records(source, document_id)
            records = [record for _, record in rows]
            order = [row_id for row_id, _ in rows]
            await target.replace_document(document_id, records, order=order)
            stored = await target.count_chunks(document_id)
            if stored != len(records):
                raise RuntimeError(
                    f"document {document_id}: {len(records)} chunks read, {stored} in the target"
                )
            totals["done"] += 1
            totals["chunks"] += len(records)
            totals["embedded"] += sum(record.vector is not None for record in records)
            if progress is not None:
                progress(totals["done"], len(documents), totals["chunks"])

    async with asyncio.TaskGroup() as group:  # the first failure cancels the rest
        for document_id in documents:
            group.create_task(move(document_id))
    return ReindexReport(
        documents=len(documents),
        chunks=totals["chunks"],
        embedded_chunks=totals["embedded"],
        seconds=time.perf_counter() - started,
    )
