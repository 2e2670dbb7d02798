"""An ingest worker's SIGTERM (a deploy, a rolling restart) hands its documents back.

Before, a stopped worker's jobs were cancelled mid-step and the documents left RUNNING
without a lease: the sweeper took them for a dead worker's, spent one of their
INGEST_MAX_RESTARTS and wrote "stopped unexpectedly", and every batch embedded so far
was thrown away. Now the worker's signal handler (`workers/queue_worker.py`) sets the
process's `Drain` and stops taking jobs; each document in progress goes on to its next
boundary, the end of the embedding batch under way (a parse is stopped at once: the
next run parses again anyway), keeps the vectors embedded so far
(`embedding_resume.py`) and is handed back: queued again as a new run, with a log line
saying why, and no restart counted. Another worker (or this one restarted) takes it
over and embeds only what is left.

A boundary that does not come within WORKER_DRAIN_SECONDS (a slow embedding batch)
ends in arq cancelling the job: the document is handed back all the same, from the
start. A document being indexed (its last step, seconds) is let finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import numpy as np
from redis.asyncio import Redis

from backend.dependency_failures import dependency_failure
from backend.knowledge import document_runs
from backend.knowledge.embedding_resume import keep_embedded, take_embedded
from backend.knowledge.fair_embedding import EmbeddingPaused, Progress, embed_in_turns
from backend.knowledge.ingest_turns import IngestTurns
from backend.knowledge.parse_queue import announce_and_enqueue
from backend.models.ids import new_id
from backend.providers.embeddings import EmbeddingProvider
from backend.settings import Settings

log = logging.getLogger("sluice.ingest")

T = TypeVar("T")


class Drain:
    """The worker process is stopping: its documents stop at their next boundary."""

    def __init__(self) -> None:
        self.requested = False
        self.stopping = asyncio.Event()

    def request(self) -> None:
        self.requested = True
        self.stopping.set()

    def check(self) -> None:
        """At a boundary: WorkerDraining if the worker is stopping."""
        if self.requested:
            raise WorkerDraining

    async def unless_stopping(self, work: Awaitable[T]) -> T:
        """`work`, or WorkerDraining as soon as the worker starts stopping, `work`
        cancelled: for a parse, whose result a handed-back run would not keep (the next
        run parses again), so waiting for its end would only delay the exit."""
        self.check()
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise WorkerDraining
        return task.result()


class WorkerDraining(Exception):
    """The run stopped at a boundary because its worker is stopping: hand it back.
    `kept` of the document's `total` chunks were embedded and kept for the next run."""

    def __init__(self, kept: int = 0, total: int | None = None) -> None:
        super().__init__("the worker is stopping")
        self.kept = kept
        self.total = total


async def embed_resumably(
    redis: Redis,
    settings: Settings,
    provider: EmbeddingProvider,
    texts: Sequence[str],
    *,
    turns: IngestTurns,
    drain: Drain | None,
    user: int,
    document: str,
    on_batch: Progress,
) -> np.ndarray:
    """The texts' vectors, in turns (`fair_embedding.py`), after the ones a drained run
    kept for these texts; WorkerDraining at a batch boundary once the worker is stopping,
    the vectors so far kept for the next run."""
    resumed = await take_embedded(redis, settings, document, provider.name, texts)
    try:
        return await embed_in_turns(
            provider,
            texts,
            line=turns.embedding_line(provider.name, getattr(provider, "parallel_batches", None)),
            pace=turns.pace(provider.name),
            user=user,
            document=document,
            on_batch=on_batch,
            resumed=resumed,
            should_pause=None if drain is None else lambda: drain.requested,
        )
    except EmbeddingPaused as paused:
        done = len(paused.vectors)
        if done:
            kept = await keep_embedded(
                redis, settings, document, provider.name, texts, paused.vectors
            )
            done = done if kept else 0
        raise WorkerDraining(done, len(texts)) from None


def handed_back_line(kept: int, total: int | None) -> str:
    kept_note = f" ({kept} of {total} chunks embedded are kept)" if kept and total else ""
    return (
        "The worker parsing this document is being stopped (a deploy or a restart); "
        f"another worker carries on{kept_note}."
    )


async def hand_back(
    redis: Redis,
    settings: Settings,
    document_id: str,
    run_id: str,
    kept: int = 0,
    total: int | None = None,
) -> str:
    """Queue the run's document again as a new run (its restarts untouched). The job's
    lease must be released already, so the worker that picks the new job can take it.
    "requeued", or "stopped" if the run was no longer live (cancelled meanwhile)."""
    try:
        document = await document_runs.current(document_id, run_id).only("id", "progress_msg")
        if not document:
            return "stopped"
        moment = document_runs.now()
        line = document_runs.log_line(handed_back_line(kept, total), moment)
        new_run = new_id()
        updated = await document_runs.current(document_id, run_id).update(
            run_id=new_run,
            progress=0.0,
            progress_msg=document_runs.append(document[0].progress_msg, line),
            process_begin_at=None,
            updated_at=moment,
        )
        if not updated:
            return "stopped"
        await announce_and_enqueue(redis, settings, {document_id: new_run})
    except Exception as error:
        if dependency_failure(error) is None:
            raise
        # The sweeper re-queues it once the lease has gone (counted as a restart) or
        # enqueues the new run's lost job: late, but not lost.
        log.warning("could not hand document %s back (%s); the sweeper will", document_id, error)
        return "stopped"
    log.warning("handed document %s back: this worker is stopping", document_id)
    return "requeued"
