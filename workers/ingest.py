"""The `ingest` queue's worker: CPU-bound parsing, chunking, embedding, indexing.

Run with `python -m workers ingest`; `python -m workers ingest --check` is its health check.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arq import cron, func

from backend.connections import redis_settings
from backend.constants import INGEST_QUEUE, queue_name
from backend.knowledge.chunked_parse import start_parse_server
from backend.knowledge.ingest_drain import Drain
from backend.knowledge.ingest_turns import IngestTurns
from backend.knowledge.parse_preview import PARSE_PREVIEW_JOB, PREVIEW_RESULT_SECONDS
from backend.knowledge.parse_queue import EMBED_CHUNKS_JOB, PARSE_DOCUMENT_JOB
from backend.providers.embedding_registry import (
    close_embeddings,
    configure_embeddings,
    embedding_provider,
    list_embedding_models,
)
from backend.providers.tokens import count_tokens
from backend.search.stores import close_search_store, configure_search_store
from backend.settings import get_settings
from backend.storage.configured import check_storage_at_start, close_storage, document_storage
from workers import lifecycle
from workers.jobs.ingest import embed_chunks, parse_document, parse_preview, sweep

_settings = get_settings()


def build_embedding_providers() -> None:
    for spec in list_embedding_models():
        embedding_provider(spec.id)


async def startup(ctx: dict[str, Any]) -> None:
    await lifecycle.startup(ctx)
    settings = ctx["settings"]
    configure_embeddings(settings)
    ctx["store"] = configure_search_store(settings)
    ctx["files"] = document_storage(settings)
    await check_storage_at_start(settings)
    # Parse slots and embedding batches, shared by this process's jobs in turns.
    ctx["turns"] = IngestTurns(settings)
    # Set by SIGTERM (workers/queue_worker.py): documents are handed back at a boundary.
    ctx["drain"] = Drain()
    # The tokenizer takes about a second to load; not on the first document's clock.
    await asyncio.to_thread(count_tokens, "warm-up")
    # Nor the parse children's server, which preloads the parsers, tokenizer and jieba,
    # nor the embedding providers' SDK imports (seconds on a busy machine, which in the
    # first job's event loop would stall its lease refresh).
    await asyncio.to_thread(start_parse_server)
    await asyncio.to_thread(build_embedding_providers)


async def shutdown(ctx: dict[str, Any]) -> None:
    await close_search_store()
    await close_storage()
    await close_embeddings()
    await lifecycle.shutdown(ctx)


class WorkerSettings:
    functions: list = [
        lifecycle.ping,
        # One try: a run whose worker died is re-queued (or failed) by the sweep, as a
        # new run; arq re-running the old one would only find it stale.
        func(
            parse_document,
            name=PARSE_DOCUMENT_JOB,
            max_tries=1,
            timeout=_settings.ingest_document_timeout_seconds + 60,
            keep_result=0,
        ),
        # The web process waits for this one's result (CHUNK_EMBED_WAIT_SECONDS).
        func(embed_chunks, name=EMBED_CHUNKS_JOB, max_tries=1, timeout=600, keep_result=60),
        # The web process waits for this one's chunks (DOCUMENT_PARSER_WAIT_SECONDS),
        # reads them at once and deletes them; kept briefly if it is gone.
        func(
            parse_preview,
            name=PARSE_PREVIEW_JOB,
            max_tries=1,
            timeout=_settings.ingest_parse_timeout_seconds + 60,
            keep_result=PREVIEW_RESULT_SECONDS,
        ),
    ]
    cron_jobs = [
        cron(
            sweep,
            second=set(range(0, 60, _settings.ingest_sweep_interval_seconds)),
            run_at_startup=True,
            timeout=60,
        )
    ]
    queue_name = queue_name(_settings.redis_prefix, INGEST_QUEUE)
    health_check_key = f"{queue_name}:health-check"
    redis_settings = redis_settings(_settings)
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = _settings.ingest_worker_max_jobs
    # A document_parser caller who hangs up aborts its job (backend/knowledge/document_parser.py).
    allow_abort_jobs = True
    job_timeout = _settings.ingest_document_timeout_seconds + 60
    # SIGTERM drains: no new jobs; each document in progress is handed back to the queue
    # at its next batch boundary, its restarts untouched (backend/knowledge/ingest_drain.py),
    # and what has not reached one by then is cancelled and handed back from the start.
    job_completion_wait = _settings.worker_drain_seconds
    # Enqueues wake the worker (backend.job_queue); this is only the idle poll.
    poll_delay = 0.5
    health_check_interval = 10
