"""Starting and stopping parses (RAGFlow's `POST`/`DELETE /api/v1/datasets/{id}/chunks`),
and putting their jobs on the `ingest` queue.

Starting queues each document for a new run (RUNNING, progress 0; see
`document_runs`) and enqueues one job per run, with the run id as the arq job id so the
same run is never enqueued twice. If the enqueue is lost, the sweeper
(`ingest_recovery.py`) enqueues it again. The web process only records and enqueues:
parsing and embedding run in the ingest worker.

Stopping marks RUNNING documents CANCEL (their jobs notice within
INGEST_CANCEL_POLL_SECONDS and stop) and removes their chunks, as RAGFlow does, so a
cancelled document has none, whatever the job had got to.
"""

from __future__ import annotations

from arq.connections import ArqRedis

from backend.constants import INGEST_QUEUE, ingest_restarts_key, queue_name
from backend.errors import Conflict, NotFound
from backend.job_queue import enqueue
from backend.knowledge import document_runs
from backend.knowledge.datasets import get_dataset
from backend.knowledge.documents import documents_of
from backend.knowledge.status_feed import publish_documents
from backend.models import Document, User
from backend.models.knowledge import DocumentRun
from backend.search.store import SearchStore
from backend.settings import Settings
from schemas.feed import FeedEventType

PARSE_DOCUMENT_JOB = "parse_document"
EMBED_CHUNKS_JOB = "embed_chunks"


def ingest_queue(settings: Settings) -> str:
    return queue_name(settings.redis_prefix, INGEST_QUEUE)


def parse_job_id(run_id: str) -> str:
    return f"parse-{run_id}"


async def enqueue_parse(redis: ArqRedis, settings: Settings, document_id: str, run_id: str) -> None:
    await enqueue(
        redis,
        ingest_queue(settings),
        PARSE_DOCUMENT_JOB,
        document_id,
        run_id,
        job_id=parse_job_id(run_id),
    )


async def announce_and_enqueue(redis: ArqRedis, settings: Settings, runs: dict[str, str]) -> None:
    """Publish each queued run's state, then enqueue its job: in this order, since a
    worker may pick a job up the moment it is enqueued, and its "received" must follow
    the "queued" in the feed (a state read after the enqueue could even be the worker's
    "received" already, sent twice)."""
    queued = await Document.filter(id__in=list(runs))
    await publish_documents(redis, settings, queued, FeedEventType.PROGRESS)
    for document_id, run_id in runs.items():
        await enqueue_parse(redis, settings, document_id, run_id)


async def selected_documents(user: User, dataset_id: str, ids: list[str]) -> list[Document]:
    """The dataset's documents named by `ids`, in that order; 404 naming any it lacks."""
    dataset = await get_dataset(user, dataset_id)
    found = {document.id: document for document in await documents_of(dataset).filter(id__in=ids)}
    missing = [document_id for document_id in ids if document_id not in found]
    if missing:
        raise NotFound(f"Documents not found in dataset '{dataset_id}': {', '.join(missing)}")
    return [found[document_id] for document_id in ids]


async def start_parsing(
    user: User, dataset_id: str, ids: list[str], *, redis: ArqRedis, settings: Settings
) -> list[str]:
    """Queue the documents for parsing and enqueue their jobs; 409 if one is already
    being parsed (stop it first). Returns the ids queued."""
    documents = await selected_documents(user, dataset_id, ids)
    runs = await document_runs.queue_for_parsing(documents)
    if runs:
        await redis.delete(*(ingest_restarts_key(settings.redis_prefix, d) for d in runs))
    await announce_and_enqueue(redis, settings, runs)
    return list(runs)


async def stop_parsing(
    user: User,
    dataset_id: str,
    ids: list[str],
    *,
    redis: ArqRedis,
    settings: Settings,
    store: SearchStore,
) -> list[str]:
    """Cancel parsing of the documents (all must be RUNNING, else 409 and nothing is
    stopped) and remove their chunks. Returns the ids cancelled."""
    documents = await selected_documents(user, dataset_id, ids)
    idle = [document.name for document in documents if document.run is not DocumentRun.RUNNING]
    if idle:
        raise Conflict(
            f"Not being parsed: {', '.join(idle)}. Only documents whose run is RUNNING can "
            "be stopped"
        )
    cancelled = await document_runs.cancel(documents)
    for document_id in cancelled:
        await store.delete_document(document_id)
    if cancelled:
        await Document.filter(id__in=cancelled).update(chunk_count=0, token_count=0)
    stopped = await Document.filter(id__in=cancelled)
    await publish_documents(redis, settings, stopped, FeedEventType.CANCELLED)
    return cancelled
