"""A run's progress as the user sees it: the document row (REST polling) and the owner's
status feed (SSE, WebSocket).

Two kinds of update. A **step** ("Parsed 12 pages in 0.84s.") is a line of the
document's `progress_msg` log, written at once: there are a handful per document. A
**live** update (embedding batch 3 of 20) moves `progress` and says where the step is
in the feed event's `progress_msg` (with chunks done/total and an ETA), without adding
a log line; it is throttled (FEED_PROGRESS_INTERVAL_SECONDS), its latest state flushed
by the run's watch when no later one comes. The final state (done, failed) is always
published, never throttled.

A person watching must never see the feed go silent while the worker has the document
(it used to, for 25-40 s per embedding batch): on every poll of the run's watch, if
nothing was published for PROGRESS_HEARTBEAT_SECONDS, the current state is published
again, saying what the worker is doing now ("Parsing (6s).", "Waiting for its turn to
embed (3s).", "Embedded 24/58 chunks (7.0s), about 9s left.").

Redis away: a progress event that cannot be published is skipped, and so are the next
ones for FEED_PAUSE_SECONDS, so the run goes on at full speed (each attempt on a paused
Redis costs a socket timeout); the run's end is retried until it is published, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from backend.constants import ingest_end_key
from backend.knowledge import document_runs
from backend.knowledge.run_watch import RunStopped
from backend.knowledge.status_feed import (
    ProgressThrottle,
    event_of,
    publish,
    publish_once,
)
from backend.knowledge.step_retry import StepUnavailable, outage_of, retried
from backend.models import Document
from backend.models.knowledge import DocumentRun
from backend.settings import Settings
from schemas.feed import DocumentEvent, FeedEventType

log = logging.getLogger("sluice.ingest")

PROGRESS_HEARTBEAT_SECONDS = 2.0
FEED_PAUSE_SECONDS = 5.0


@dataclass
class Activity:
    """What the worker is doing for the run between steps, for heartbeat events; while
    embedding, chunks done/total and the ETA measured at `measured_at`."""

    what: str
    since: float
    chunks_done: int | None = None
    chunks_total: int | None = None
    eta: float | None = None
    measured_at: float = 0.0

    def eta_seconds(self) -> float | None:
        if self.eta is None:
            return None
        return round(max(0.0, self.eta - (time.monotonic() - self.measured_at)), 1)

    def line(self) -> str:
        seconds = time.monotonic() - self.since
        if self.chunks_total is None:
            return f"{self.what} ({seconds:.0f}s)."
        left = self.eta_seconds()
        eta = "" if left is None else f", about {left:.0f}s left"
        return f"Embedded {self.chunks_done}/{self.chunks_total} chunks ({seconds:.1f}s){eta}."


class RunReport:
    def __init__(self, redis: Redis, settings: Settings, document: Document, run_id: str) -> None:
        self.redis = redis
        self.settings = settings
        # A local copy, kept in step with what was written, to build events from.
        self.document = document
        self.run_id = run_id
        self.throttle = ProgressThrottle(settings.feed_progress_interval_seconds)
        self.pending: DocumentEvent | None = None
        self.pending_progress: float | None = None
        self.begun = time.monotonic()
        self.sending = asyncio.Lock()
        self.last_sent = time.monotonic()
        self.feed_paused_until = 0.0
        self.activity: Activity | None = None
        # The step under way, named in a failure's reason ("Indexing failed. …").
        self.stage = "Parsing"

    def elapsed(self) -> float:
        return time.monotonic() - self.begun

    def event(self, line: str | None = None) -> DocumentEvent:
        event = event_of(self.document)
        event.process_duration = round(self.elapsed(), 3)
        if line is not None:
            event.progress_msg = line
        if self.activity is not None:
            event.chunks_done = self.activity.chunks_done
            event.chunks_total = self.activity.chunks_total
            event.eta_seconds = self.activity.eta_seconds()
        return event

    async def send(self, event: DocumentEvent) -> None:
        """Publish a progress event, unless the feed failed within FEED_PAUSE_SECONDS: a
        paused Redis answers each attempt only with a timeout (seconds), and progress
        is news, not worth holding the document's embedding batches for."""
        if time.monotonic() < self.feed_paused_until:
            return
        try:
            await publish(self.redis, self.settings, self.document.owner_id, event)
        except Exception as error:
            self.feed_paused_until = time.monotonic() + FEED_PAUSE_SECONDS
            log.warning(
                "could not publish %s for document %s (%s: %s); progress events paused %g s",
                event.type,
                event.document_id,
                type(error).__name__,
                error,
                FEED_PAUSE_SECONDS,
            )
            return
        self.last_sent = time.monotonic()

    async def started(self) -> None:
        async with self.sending:
            await self.send(self.event())

    def doing(self, what: str) -> None:
        """What the worker does next for the run, until the next step or `doing`."""
        self.activity = Activity(what, time.monotonic())

    async def step(self, progress: float, line: str) -> None:
        """A log line and the progress so far; RunStopped if the run is no longer live."""
        recorded = await retried(
            self.stage,
            lambda: document_runs.record_progress(self.document.id, self.run_id, progress, line),
            self.settings.ingest_outage_retry_seconds,
        )
        if not recorded:
            raise RunStopped
        self.document.progress = progress
        self.document.progress_msg = document_runs.append(
            self.document.progress_msg, document_runs.log_line(line)
        )
        self.activity = None
        self.pending, self.pending_progress = self.event(), None
        await self.flush()

    async def live(self, progress: float, done: int, total: int, eta: float | None) -> None:
        """Embedding progress within a step (throttled): `done` of `total` chunks, `eta`
        seconds left; its line goes to the feed, not the log."""
        self.document.progress = progress
        if self.activity is None:
            self.doing("Embedding")
        assert self.activity is not None
        self.activity.chunks_done, self.activity.chunks_total = done, total
        self.activity.eta, self.activity.measured_at = eta, time.monotonic()
        self.pending, self.pending_progress = self.event(self.activity.line()), progress
        await self.flush()

    async def flush(self) -> None:
        """Send the latest pending update if the throttle allows it now. The job's own
        steps and the watch's polls both flush: one at a time, so an update taken first
        is published first (never a batch's progress after the next step's line)."""
        async with self.sending:
            if self.pending is None or not self.throttle.due():
                return
            event, progress = self.pending, self.pending_progress
            self.pending = self.pending_progress = None
            try:
                if progress is not None and not await document_runs.record_progress(
                    self.document.id, self.run_id, progress
                ):
                    return  # stale: the watch stops the run
            except Exception as error:
                if outage_of(error) is None:
                    raise
                # Progress within a step is only news: the database being away must not
                # end the run; the next update (or the step's line) carries it.
                self.pending = self.pending or event
                return
            await self.send(event)

    async def heartbeat(self) -> None:
        """On each watch poll: the pending update if due, else the current state again
        when nothing was published for PROGRESS_HEARTBEAT_SECONDS."""
        await self.flush()
        async with self.sending:
            quiet = time.monotonic() - self.last_sent
            if quiet < PROGRESS_HEARTBEAT_SECONDS or self.activity is None:
                return
            await self.send(self.event(self.activity.line()))

    async def ended(self) -> None:
        """Publish the run's final state as stored (done or failed), never throttled, and
        through an outage (Redis paused or restarting as the run ends): a subscriber must
        not wait for an end that was dropped. Given up after INGEST_OUTAGE_RETRY_SECONDS
        (the state is in SQL, for REST and the next `documents` read)."""
        self.pending = self.activity = None
        try:
            await retried("Reporting", self.publish_end, self.settings.ingest_outage_retry_seconds)
        except StepUnavailable as error:
            log.warning("the end of document %s was not published: %s", self.document.id, error)

    async def publish_end(self) -> None:
        document = await Document.get_or_none(id=self.document.id)
        if document is None or document.run_id != self.run_id:
            return
        kind = FeedEventType.DONE if document.run is DocumentRun.DONE else FeedEventType.FAILED
        async with self.sending:
            event = event_of(document, kind)
            marker = ingest_end_key(self.settings.redis_prefix, document.id, self.run_id)
            await publish_once(self.redis, self.settings, document.owner_id, event, marker)
            self.last_sent = time.monotonic()

    async def fail(self, reason: str) -> str:
        """End the run FAIL with `reason` (written for the user) and say so."""
        self.pending = self.activity = None
        if await document_runs.finish(self.document.id, self.run_id, DocumentRun.FAIL, reason):
            await self.ended()
            return "failed"
        return "stopped"
