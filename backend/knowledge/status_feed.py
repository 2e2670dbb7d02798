"""Each user's document status feed: a Redis Stream per user, capped in length and age.

Whoever changes a document's run appends an event to its owner's feed: the web process
when parsing is queued or cancelled, the ingest worker as it progresses and when it
ends. Readers (SSE `GET /api/v1/events`, the WebSocket's `subscribe_feed`) follow the
stream through the process's stream hub and resume after the last entry id they saw.
Nothing is consumed: a feed is history, read by any number of its user's connections.

Bounds: every append trims the stream to FEED_MAX_EVENTS entries and drops entries
older than FEED_RETENTION_SECONDS, and the key expires that long after its last event,
so an idle user costs nothing. Progress is throttled per document by `ProgressThrottle`
(FEED_PROGRESS_INTERVAL_SECONDS); final states are always appended.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis

from backend.constants import document_feed_key
from backend.models import Document
from backend.settings import Settings
from backend.streams.task_stream import text
from schemas.documents import Run
from schemas.feed import DocumentEvent, FeedEventType

log = logging.getLogger("sluice.feed")

OUTCOME_EVENTS = {
    Run.DONE: FeedEventType.DONE,
    Run.FAIL: FeedEventType.FAILED,
    Run.CANCEL: FeedEventType.CANCELLED,
}


def now_ms() -> int:
    return int(time.time() * 1000)


def last_line(log_text: str) -> str:
    return log_text.rsplit("\n", 1)[-1]


def event_of(document: Document, kind: FeedEventType | None = None) -> DocumentEvent:
    """The event describing `document` as stored now; the type follows its run unless
    given (RUNNING is progress, DONE done, FAIL failed, CANCEL cancelled)."""
    run = Run(document.run)
    return DocumentEvent(
        type=kind or OUTCOME_EVENTS.get(run, FeedEventType.PROGRESS),
        document_id=document.id,
        dataset_id=document.dataset_id,
        document_name=document.name,
        run=run,
        progress=min(max(document.progress, 0.0), 1.0),
        progress_msg=last_line(document.progress_msg),
        chunk_count=document.chunk_count,
        token_count=document.token_count,
        process_duration=document.process_duration,
        timestamp=now_ms(),
    )


async def publish(redis: Redis, settings: Settings, user_id: int, event: DocumentEvent) -> str:
    """Append `event` to the user's feed, trimmed to its bounds; returns the entry id."""
    key = document_feed_key(settings.redis_prefix, user_id)
    fields = {"type": event.type.value, "data": event.model_dump_json(exclude={"type"})}
    oldest = f"{now_ms() - settings.feed_retention_seconds * 1000}-0"
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(key, fields, maxlen=settings.feed_max_events, approximate=True)
        pipe.xtrim(key, minid=oldest, approximate=True)
        pipe.expire(key, settings.feed_retention_seconds)
        entry_id, _, _ = await pipe.execute()
    return text(entry_id)


# KEYS: the feed, the marker; ARGV: type, data, max length, oldest id, retention seconds.
# The event is appended only if the marker was not set: once, however often it is tried.
PUBLISH_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[5]) then return false end
local fields = {'type', ARGV[1], 'data', ARGV[2]}
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return id
"""


async def publish_once(
    redis: Redis, settings: Settings, user_id: int, event: DocumentEvent, marker: str
) -> bool:
    """`publish`, at most once per `marker` key: a run's end is retried through an outage,
    and a paused Redis runs a timed-out attempt when it resumes, so the retry must not
    append a second end. False when an earlier attempt appended it."""
    key = document_feed_key(settings.redis_prefix, user_id)
    data = event.model_dump_json(exclude={"type"})
    oldest = f"{now_ms() - settings.feed_retention_seconds * 1000}-0"
    retention = settings.feed_retention_seconds
    args = (event.type.value, data, settings.feed_max_events, oldest, retention)
    return bool(await redis.eval(PUBLISH_ONCE, 2, key, marker, *args))


async def publish_quietly(
    redis: Redis, settings: Settings, user_id: int, event: DocumentEvent
) -> None:
    """`publish` for callers whose own work must not fail with the feed: the document's
    state is in SQL either way, and REST polling reads it there."""
    try:
        await publish(redis, settings, user_id, event)
    except Exception:
        log.warning("could not publish %s for document %s", event.type, event.document_id)


async def publish_documents(
    redis: Redis, settings: Settings, documents: list[Document], kind: FeedEventType | None = None
) -> None:
    """The current state of each document, to its owner's feed."""
    for document in documents:
        await publish_quietly(redis, settings, document.owner_id, event_of(document, kind))


class ProgressThrottle:
    """At most one progress event per `interval` seconds for one document's run."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = float("-inf")

    def due(self) -> bool:
        moment = time.monotonic()
        if moment - self.last < self.interval:
            return False
        self.last = moment
        return True
