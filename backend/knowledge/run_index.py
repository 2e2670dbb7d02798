"""A run's last step: its chunks written to the search store, and the run ended DONE.

Chunks are written only here, in one `replace_document` whose chunk ids are stable: a
stale job that got this far removes them again if the document is gone or cancelled,
and a job delivered twice leaves one copy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backend.knowledge import document_runs
from backend.knowledge.chunk_records import parsed_records
from backend.knowledge.chunking import Chunk
from backend.metrics.instruments import INGEST_CHUNKS
from backend.models import Document
from backend.models.knowledge import DocumentRun
from backend.search.store import SearchStore


@dataclass
class Prepared:
    chunks: Sequence[Chunk]
    vectors: np.ndarray
    content_length: int
    token_count: int


async def clean_up_stale(store: SearchStore, document_id: str) -> None:
    """After a stale run may have indexed: remove its chunks if the document is gone or
    cancelled. A re-queued document's next run replaces them; a finished one is left."""
    document = await Document.get_or_none(id=document_id).only("id", "run")
    if document is None or document.run is DocumentRun.CANCEL:
        await store.delete_document(document_id)


async def index(store: SearchStore, document: Document, prepared: Prepared) -> str:
    """Write the chunks and end the run DONE; undo the write if the run went stale."""
    begun = time.monotonic()
    records = parsed_records(document, prepared.chunks, prepared.vectors)
    if not await document_runs.current(document.id, document.run_id).exists():
        return "stopped"
    try:
        await store.replace_document(document.id, records)
    finally:
        # Even cancelled, the write may have happened (it runs on the store's thread).
        if not await document_runs.current(document.id, document.run_id).exists():
            await asyncio.shield(clean_up_stale(store, document.id))
    message = (
        f"Indexed {len(records)} chunks in {time.monotonic() - begun:.2f}s. Task done "
        f"({len(records)} chunks, {prepared.token_count} tokens)."
    )
    finished = await document_runs.finish(
        document.id,
        document.run_id,
        DocumentRun.DONE,
        message,
        chunk_count=len(records),
        token_count=prepared.token_count,
        content_length=prepared.content_length,
    )
    if not finished:
        await clean_up_stale(store, document.id)
        return "stopped"
    INGEST_CHUNKS.inc(len(records))
    return "done"
