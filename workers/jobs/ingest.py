"""The ingest queue's jobs: parse a document run, embed chunks written by hand, parse an
upload without storing it (QAnything's document_parser), and the sweep that recovers
documents whose worker died (backend/knowledge/ingest_recovery.py)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
from typing import Any

from backend.knowledge.chunk_embedding import embed_stored_chunks
from backend.knowledge.ingest_recovery import sweep_documents
from backend.knowledge.ingestion import IngestContext, ingest_document
from backend.knowledge.parse_preview import PreviewFile, PreviewResult, preview_chunks
from backend.metrics.instruments import INGEST_DOCUMENTS


def ingest_context(ctx: dict[str, Any]) -> IngestContext:
    return IngestContext(
        redis=ctx["redis"],
        settings=ctx["settings"],
        store=ctx["store"],
        files=ctx["files"],
        turns=ctx["turns"],
        drain=ctx.get("drain"),
    )


def return_freed_memory() -> None:
    """Hand the heap freed by a finished (or cancelled) document back to the system.

    glibc keeps freed memory in its arenas for reuse; after a large document (its chunks
    and vectors) the worker stayed at 840 MB where it started at 233 MB. `malloc_trim`
    returns the free pages at once (a few milliseconds)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def parse_document(ctx: dict[str, Any], document_id: str, run_id: str) -> str:
    try:
        outcome = await ingest_document(ingest_context(ctx), document_id, run_id)
    finally:
        gc.collect()
        await asyncio.to_thread(return_freed_memory)
    # "done", "failed", "stopped", "requeued" or "skipped: why"; chunks are counted by `index`.
    INGEST_DOCUMENTS.labels(outcome.partition(":")[0]).inc()
    return outcome


async def embed_chunks(ctx: dict[str, Any], document_id: str, chunk_ids: list[str]) -> int:
    return await embed_stored_chunks(ctx["store"], document_id, chunk_ids)


async def parse_preview(ctx: dict[str, Any], preview: PreviewFile) -> PreviewResult:
    return await preview_chunks(preview, ctx["settings"], ctx["files"], ctx["turns"])


async def sweep(ctx: dict[str, Any]) -> int:
    return await sweep_documents(ctx["redis"], ctx["settings"])
