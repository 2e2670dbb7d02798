"""A document's parse runs: every change of its `run` state goes through here.

    UNSTART ──queue──▶ RUNNING ──finish──▶ DONE | FAIL
                          │ ▲
                   cancel ▼ │ queue (re-parse from CANCEL, DONE or FAIL)
                        CANCEL

Queueing gives the document a fresh `run_id`; the ingest job carries it, and every
later write of that job is conditional on the document still having that run id and
still RUNNING. So a cancelled, re-queued or deleted document (its row gone) turns every
write of a stale job into a no-op that returns False: the job then stops and removes
whatever it indexed. A job delivered twice starts the same run twice, never two runs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.queryset import QuerySet

from backend.errors import Conflict
from backend.models import Document
from backend.models.ids import new_id
from backend.models.knowledge import DocumentRun

QUEUED_MESSAGE = "Task is queued."


def now() -> datetime:
    return datetime.now(UTC)


def log_line(message: str, moment: datetime | None = None) -> str:
    """One line of `progress_msg`, as RAGFlow writes them: `HH:MM:SS message`."""
    return f"{(moment or now()):%H:%M:%S} {message}"


async def queue_for_parsing(documents: list[Document]) -> dict[str, str]:
    """Record documents as ready to parse (RUNNING, progress 0, a new run each) and return
    {document id: run id} for the jobs to enqueue. A document already RUNNING is a 409:
    stop it first. Chunk and token counts stay until the new run replaces them."""
    running = [document.name for document in documents if document.run is DocumentRun.RUNNING]
    if running:
        raise Conflict(
            f"Already being parsed: {', '.join(running)}; stop parsing first (DELETE .../chunks)"
        )
    runs: dict[str, str] = {}
    for document in documents:
        run_id = new_id()
        updated = await Document.filter(id=document.id, run__not=DocumentRun.RUNNING).update(
            run=DocumentRun.RUNNING,
            run_id=run_id,
            progress=0.0,
            progress_msg=log_line(QUEUED_MESSAGE),
            process_begin_at=None,
            process_duration=0.0,
            updated_at=now(),
        )
        if updated:
            runs[document.id] = run_id
    return runs


def current(document_id: str, run_id: str) -> QuerySet[Document]:
    """The document while this run is its live one, as a filter for conditional writes."""
    return Document.filter(id=document_id, run_id=run_id, run=DocumentRun.RUNNING)


async def start(document_id: str, run_id: str) -> Document | None:
    """A worker picks the run up; None when the run is no longer live (do nothing)."""
    document = await current(document_id, run_id).first()
    if document is None:
        return None
    begun = now()
    document.process_begin_at = begun
    document.progress_msg = append(
        document.progress_msg, log_line("Task has been received.", begun)
    )
    updated = await current(document_id, run_id).update(
        process_begin_at=begun, progress_msg=document.progress_msg, updated_at=begun
    )
    return document if updated else None


def append(log: str, line: str) -> str:
    return f"{log}\n{line}" if log else line


async def record_progress(
    document_id: str, run_id: str, progress: float, message: str | None = None
) -> bool:
    """Progress 0..1 and, optionally, one more log line; False when the run is stale."""
    fields: dict[str, object] = {"progress": min(max(progress, 0.0), 1.0), "updated_at": now()}
    if message is not None:
        document = await current(document_id, run_id).only("id", "progress_msg").first()
        if document is None:
            return False
        fields["progress_msg"] = append(document.progress_msg, log_line(message))
    return bool(await current(document_id, run_id).update(**fields))


async def finish(
    document_id: str,
    run_id: str,
    outcome: DocumentRun,
    message: str,
    *,
    chunk_count: int | None = None,
    token_count: int | None = None,
    content_length: int | None = None,
) -> bool:
    """End the run as DONE or FAIL with a last log line (for FAIL: why, for the user).
    False when the run is stale: the caller must then remove what it indexed."""
    if outcome not in (DocumentRun.DONE, DocumentRun.FAIL):
        raise ValueError(f"A run finishes DONE or FAIL, not {outcome}")
    document = await current(document_id, run_id).first()
    if document is None:
        return False
    ended = now()
    begun = document.process_begin_at or ended
    fields: dict[str, object] = {
        "run": outcome,
        "progress": 1.0 if outcome is DocumentRun.DONE else document.progress,
        "progress_msg": append(document.progress_msg, log_line(message, ended)),
        "process_duration": round((ended - begun).total_seconds(), 4),
        "updated_at": ended,
    }
    counts = (
        ("chunk_count", chunk_count),
        ("token_count", token_count),
        ("content_length", content_length),
    )
    fields.update({name: value for name, value in counts if value is not None})
    return bool(await current(document_id, run_id).update(**fields))


async def cancel(documents: list[Document]) -> list[str]:
    """Stop the RUNNING ones (CANCEL, run id cleared): their jobs see a stale run, stop,
    and remove their partial chunks. Returns the ids cancelled."""
    cancelled = []
    for document in documents:
        updated = await Document.filter(id=document.id, run=DocumentRun.RUNNING).update(
            run=DocumentRun.CANCEL,
            run_id=None,
            progress_msg=append(document.progress_msg, log_line("Parsing was cancelled.")),
            updated_at=now(),
        )
        if updated:
            cancelled.append(document.id)
    return cancelled
