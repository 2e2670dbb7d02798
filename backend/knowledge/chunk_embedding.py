"""Embedding chunks written by hand (added, edited, FAQ) without running a model in the
web process.

The web process writes the chunk to the search store at once (so its words are
searchable immediately), enqueues `embed_chunks` on the ingest queue and waits up to
CHUNK_EMBED_WAIT_SECONDS for it: usually the answer says `embedded: true`; when the
worker is busy with a long document (or none runs) it says `embedded: false`, and the
vector follows when the job runs. An edited chunk keeps its previous vector until then.

The job embeds the chunk's text as it is when the job runs, and writes the vector only
if that text is still the chunk's when it is done: of two edits in quick succession,
the later one's vector wins, whichever job finishes first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from arq.connections import ArqRedis

from backend.job_queue import enqueue
from backend.knowledge.chunk_records import embedding_text
from backend.knowledge.parse_queue import EMBED_CHUNKS_JOB, ingest_queue
from backend.models import Dataset, Document
from backend.providers.embedding_registry import embedding_provider
from backend.search.store import ChunkUpdate, SearchStore
from backend.settings import Settings

log = logging.getLogger("sluice.chunks")

RESULT_POLL_SECONDS = 0.05


async def embed_soon(
    redis: ArqRedis, settings: Settings, document_id: str, chunk_ids: Sequence[str]
) -> bool:
    """Enqueue the embedding and wait for it a bounded time; whether it is done."""
    job = await enqueue(
        redis, ingest_queue(settings), EMBED_CHUNKS_JOB, document_id, list(chunk_ids)
    )
    if job is None or settings.chunk_embed_wait_seconds <= 0:
        return False
    try:
        embedded = await job.result(
            timeout=settings.chunk_embed_wait_seconds, poll_delay=RESULT_POLL_SECONDS
        )
    except TimeoutError:
        return False
    except Exception:
        log.warning("embedding chunks of document %s failed", document_id, exc_info=True)
        return False
    return embedded == len(chunk_ids)


async def embed_stored_chunks(store: SearchStore, document_id: str, chunk_ids: list[str]) -> int:
    """The ingest job: embed the chunks' current text and store the vectors; how many
    got one. Raises the provider's error if embedding fails."""
    document = await Document.get_or_none(id=document_id)
    dataset = await Dataset.get_or_none(id=document.dataset_id) if document else None
    if document is None or dataset is None:
        return 0
    records = [await store.get_chunk(chunk_id, document_id) for chunk_id in chunk_ids]
    present = [record for record in records if record is not None]
    if not present:
        return 0
    texts = [embedding_text(record.content, record.questions) for record in present]
    vectors = await embedding_provider(dataset.embedding_model).embed_documents(texts)
    stored = 0
    for record, text, vector in zip(present, texts, vectors, strict=True):
        current = await store.get_chunk(record.chunk_id, document_id)
        if current is None or embedding_text(current.content, current.questions) != text:
            continue  # edited meanwhile: the edit's own job embeds it
        if await store.update_chunk(document_id, record.chunk_id, ChunkUpdate(vector=vector)):
            stored += 1
    return stored
