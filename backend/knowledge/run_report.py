"""A run's progress as the user sees it: the document row (REST polling) and the owner's
status feed (SSE, WebSocket).

Two kinds of update. A **step** ("Parsed 12 pages in 0.84s.") is a line of the
document's `progress_msg` log, written at once: there are a handful per document. A
**live** update (embedding batch 3 of 20) moves `progress` and says where the step is
in the feed event's `progress_msg`, without adding a log line; it is throttled
(FEED_PROGRESS_INTERVAL_SECONDS), its latest state flushed by the run's watch when no
later one comes. The final state (done, failed) is always published, never throttled.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from backend.knowledge import document_runs
from backend.knowledge.run_watch import RunStopped
from backend.knowledge.status_feed import ProgressThrottle, event_of, publish_quietly
from backend.models import Document
from backend.models.knowledge import DocumentRun
from backend.settings import Settings
from schemas.feed import DocumentEvent, FeedEventType


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

    def elapsed(self) -> float:
        return time.monotonic() - self.begun

    def event(self, line: str | None = None) -> DocumentEvent:
        event = event_of(self.document)
        event.process_duration = round(self.elapsed(), 3)
        if line is not None:
            event.progress_msg = line
        return event

    async def started(self) -> None:
        await publish_quietly(self.redis, self.settings, self.document.owner_id, self.event())

    async def step(self, progress: float, line: str) -> None:
        """A log line and the progress so far; RunStopped if the run is no longer live."""
        if not await document_runs.record_progress(self.document.id, self.run_id, progress, line):
            raise RunStopped
        self.document.progress = progress
        self.document.progress_msg = document_runs.append(
            self.document.progress_msg, document_runs.log_line(line)
        )
        self.pending, self.pending_progress = self.event(), None
        await self.flush()

    async def live(self, progress: float, line: str) -> None:
        """Progress within a step (throttled); `line` goes to the feed, not the log."""
        self.document.progress = progress
        self.pending, self.pending_progress = self.event(line), progress
        await self.flush()

    async def flush(self) -> None:
        """Send the latest pending update if the throttle allows it now."""
        if self.pending is None or not self.throttle.due():
            return
        event, progress = self.pending, self.pending_progress
        self.pending = self.pending_progress = None
        if progress is not None and not await document_runs.record_progress(
            self.document.id, self.run_id, progress
        ):
            return  # stale: the watch stops the run
        await publish_quietly(self.redis, self.settings, self.document.owner_id, event)

    async def ended(self) -> None:
        """Publish the run's final state as stored (done or failed), never throttled."""
        self.pending = None
        document = await Document.get_or_none(id=self.document.id)
        if document is None or document.run_id != self.run_id:
            return
        kind = FeedEventType.DONE if document.run is DocumentRun.DONE else FeedEventType.FAILED
        await publish_quietly(
            self.redis, self.settings, document.owner_id, event_of(document, kind)
        )

    async def fail(self, reason: str) -> str:
        """End the run FAIL with `reason` (written for the user) and say so."""
        self.pending = None
        if await document_runs.finish(self.document.id, self.run_id, DocumentRun.FAIL, reason):
            await self.ended()
            return "failed"
        return "stopped"
