"""The ingest worker's pipeline for one document run: parse -> chunk -> embed -> index.

    lease -> start (RUNNING, "Task has been received.")
          -> parse and chunk in a child process under time and memory limits
             (chunked_parse.py, parsing/runner.py), in turns for a parse slot
          -> embed in batches of about EMBEDDING_BATCH_SECONDS, in turns with the
             worker's other documents (fair_embedding.py; progress per batch)
          -> replace the document's chunks in the search store, in one step
          -> DONE with chunk_count, token_count, content_length, process_duration

Every failure a user can cause or suffer (a broken, encrypted or empty file, a blank scan,
a parser that loops or balloons, an embedding provider that is down, a document over
INGEST_DOCUMENT_TIMEOUT_SECONDS) ends the run FAIL with a reason in `progress_msg`; an
unexpected error too, logged, naming the step it happened in. A dependency outage
(PostgreSQL, Redis, the search store) is waited out by the step that met it
(`step_retry.py`), up to INGEST_OUTAGE_RETRY_SECONDS, without spending a restart.
A worker being stopped (SIGTERM) hands the run back at its next boundary, the vectors
embedded so far kept for the next run (`ingest_drain.py`), spending no restart either.
Nothing escapes to arq but a shutdown's cancellation, so the worker keeps serving the
queue and no document is left RUNNING by this job.

The run's watch (`run_watch.py`) stops the work the moment the run goes stale
(cancelled, deleted, re-queued by the sweeper). Chunks are written only at the end,
in one `replace_document` whose chunk ids are stable (`run_index.py`): a stale job
that got that far removes them again if the document is gone or cancelled, and a job
delivered twice leaves one copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from backend.errors import ApiError
from backend.knowledge import document_runs
from backend.knowledge.chunk_records import embedding_text
from backend.knowledge.chunked_parse import ChunkedDocument, chunked_in_child, parse_budget
from backend.knowledge.ingest_drain import Drain, WorkerDraining, embed_resumably, hand_back
from backend.knowledge.ingest_turns import IngestTurns
from backend.knowledge.ocr_feed import ocr_feed
from backend.knowledge.parsing.document import ParseFailure
from backend.knowledge.run_index import Prepared, index
from backend.knowledge.run_report import RunReport
from backend.knowledge.run_watch import RunStopped, RunWatch
from backend.knowledge.step_retry import StepUnavailable, retried
from backend.models import Dataset, Document
from backend.providers.base import ProviderError
from backend.providers.embedding_registry import embedding_provider
from backend.search.store import SearchStore
from backend.settings import Settings
from backend.storage.base import FileStorage

log = logging.getLogger("sluice.ingest")

PARSED, CHUNKED, EMBEDDED = 0.1, 0.15, 0.95
MB = 1024 * 1024


@dataclass
class IngestContext:
    """What a job needs, from the worker's context. `turns` are the worker process's
    shared turns (one per process, so documents share them fairly)."""

    redis: Redis
    settings: Settings
    store: SearchStore
    files: FileStorage
    turns: IngestTurns | None = None
    # Set when the worker is stopping: the run is handed back at its next boundary.
    drain: Drain | None = None

    def __post_init__(self) -> None:
        if self.turns is None:
            self.turns = IngestTurns(self.settings)


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def parse_summary(parsed: ChunkedDocument) -> str:
    seconds = parsed.parse_seconds
    if parsed.qa_pairs:
        what = counted(len(parsed.qa_pairs), "question/answer pair")
        return f"Read {what} in {seconds:.2f}s."
    if parsed.page_count:
        return f"Parsed {counted(parsed.page_count, 'page')} in {seconds:.2f}s."
    return f"Parsed {counted(parsed.section_count, 'section')} in {seconds:.2f}s."


async def parse(context: IngestContext, document: Document) -> ChunkedDocument:
    """Parse and chunk in the limited child (`chunked_parse.py`)."""
    settings = context.settings
    async with context.files.local_copy(document.location) as path:
        return await chunked_in_child(
            path,
            document.suffix,
            document.chunk_method,
            document.parser_config,
            max_chunks=settings.ingest_max_chunks,
            timeout_s=parse_budget(document.size, settings),
            memory_limit=settings.ingest_parse_memory_mb * MB or None,
        )


async def prepare(context: IngestContext, document: Document, report: RunReport) -> Prepared:
    """Everything before indexing; raises ParseFailure, ProviderError or ApiError with
    a reason for the user."""
    turns = context.turns
    assert turns is not None
    report.doing("Waiting for a free parser")
    async with turns.parsing.turn(document.owner_id, document.id):
        report.doing("Parsing")
        async with ocr_feed(context.settings, document, report, share=PARSED):
            if context.drain is None:
                parsed = await parse(context, document)
            else:
                parsed = await context.drain.unless_stopping(parse(context, document))
    await report.step(PARSED, parse_summary(parsed))
    for warning in parsed.warnings:
        await report.step(PARSED, f"Warning: {warning}")
    chunks, tokens = parsed.chunks, parsed.token_count
    await report.step(
        CHUNKED,
        f"Cut into {counted(len(chunks), 'chunk')} ({tokens} tokens) in "
        f"{parsed.chunk_seconds:.2f}s.",
    )

    report.stage = "Embedding"
    dataset = await retried(
        "Embedding",
        lambda: Dataset.get_or_none(id=document.dataset_id),
        context.settings.ingest_outage_retry_seconds,
    )
    if dataset is None:
        raise RunStopped
    provider = embedding_provider(dataset.embedding_model)
    if dataset.embedding_dimension not in (None, provider.dimension):
        raise ParseFailure(
            f"The dataset's vectors have {dataset.embedding_dimension} dimensions but its "
            f"embedding model '{provider.name}' now gives {provider.dimension}: an operator "
            "must restore the model's configuration"
        )
    await report.step(
        CHUNKED,
        f"Embedding {len(chunks)} chunks with {provider.name}, in turns with other documents.",
    )
    report.doing("Embedding")
    begun = time.monotonic()

    async def batch_done(done: int, total: int, eta: float | None) -> None:
        await report.live(CHUNKED + (EMBEDDED - CHUNKED) * done / total, done, total, eta)

    vectors = await embed_resumably(
        context.redis,
        context.settings,
        provider,
        [embedding_text(chunk.content, chunk.questions) for chunk in chunks],
        turns=turns,
        drain=context.drain,
        user=document.owner_id,
        document=document.id,
        on_batch=batch_done,
    )
    seconds = time.monotonic() - begun
    rate = len(chunks) / seconds if seconds > 0 else float(len(chunks))
    await report.step(EMBEDDED, f"Embedded {len(chunks)} chunks in {seconds:.1f}s ({rate:.1f}/s).")
    return Prepared(chunks, vectors, parsed.char_count, tokens)


async def ingest_document(context: IngestContext, document_id: str, run_id: str) -> str:
    """Run one document's parse; what happened (done, failed, stopped, requeued, skipped)."""
    settings = context.settings
    watch = RunWatch(context.redis, settings, document_id, run_id)
    if not await retried("Starting", watch.acquire, settings.ingest_outage_retry_seconds):
        return "skipped: another job is working on this document"
    try:
        document = await retried(
            "Starting",
            lambda: document_runs.start(document_id, run_id),
            settings.ingest_outage_retry_seconds,
        )
        if document is None:
            return "skipped: the run is no longer live"
        report = RunReport(context.redis, settings, document, run_id)
        await report.started()
        watch.on_poll = report.heartbeat
        try:
            async with watch:
                prepared = await asyncio.wait_for(
                    watch.guard(prepare(context, document, report)),
                    settings.ingest_document_timeout_seconds,
                )
                # Still under the lease: indexing into Elasticsearch takes seconds, and a
                # run without its lease looks dead to the other workers' sweeps. Indexing
                # again is harmless (stable chunk ids, a finish conditional on the run).
                report.stage = "Indexing"
                outcome = await retried(
                    "Indexing",
                    lambda: index(context.store, document, prepared),
                    settings.ingest_outage_retry_seconds,
                )
        except RunStopped:
            return "stopped"
        except WorkerDraining as draining:
            return await hand_back(
                context.redis, settings, document_id, run_id, draining.kept, draining.total
            )
        except asyncio.CancelledError:
            # The drain's time ran out before a boundary came (a slow batch), or none.
            if context.drain is not None and context.drain.requested:
                await asyncio.shield(hand_back(context.redis, settings, document_id, run_id))
            raise
        except ParseFailure as failure:
            return await report.fail(failure.reason)
        except TimeoutError:
            return await report.fail(
                f"Parsing took longer than {settings.ingest_document_timeout_seconds:g} s and "
                "was stopped: split the document, or ask an operator to raise "
                "INGEST_DOCUMENT_TIMEOUT_SECONDS"
            )
        except ProviderError as error:
            return await report.fail(f"Embedding failed: {error.message}")
        except ApiError as error:
            return await report.fail(error.message)
        except StepUnavailable as error:
            return await report.fail(f"{error}; parse the document again once it is back")
        except Exception:
            log.exception("ingesting document %s failed", document_id)
            return await report.fail(
                f"{report.stage} failed because of an internal error; try again"
            )
        if outcome == "done":
            await report.ended()
        return outcome
    finally:
        await watch.release()
