"""Delivering a user's document status feed (SSE and WebSocket alike).

A feed is not a task stream: there is no lease (every connection of the user may read
it, e.g. two tabs), nothing is consumed, and there is no terminal event: a reader
follows it until the client leaves. It goes through the process's stream hub, so a
thousand idle feed readers share a few blocking XREADs. A reader without a resume
point starts at the feed's current end; one resuming from an id the feed no longer
keeps (trimmed or expired) is first told that it may have missed events (`feed.reset`),
so it re-reads the documents' state over REST.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from backend.constants import document_feed_key
from backend.errors import BadRequest
from backend.models import User
from backend.settings import Settings
from backend.streams.hub import StreamHub
from backend.streams.task_stream import START, entry_id_key, is_entry_id, text
from schemas.feed import FeedEventType, FeedResetEvent

RESET_MESSAGE = (
    "Some events after your last event id are no longer kept: read your documents' state "
    "again (GET /api/v1/datasets/{id}/documents); new events follow"
)


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One feed event as stored: its entry id, type and JSON data (without `type`)."""

    id: str
    type: str
    data: str

    @classmethod
    def from_redis(cls, entry_id: bytes | str, fields: dict[Any, Any]) -> FeedEntry:
        values = {text(k): text(v) for k, v in fields.items()}
        return cls(id=text(entry_id), type=values["type"], data=values["data"])


def reset_entry() -> FeedEntry:
    """The notice of a possible gap; it has no id, so a client's last event id stays."""
    data = FeedResetEvent(message=RESET_MESSAGE).model_dump_json(exclude={"type"})
    return FeedEntry(id="", type=FeedEventType.RESET.value, data=data)


def feed_entry_id(value: str) -> bool:
    """A stream entry id Redis accepts: `ms-seq`, each part below 2**64 (a longer one
    would be refused by every XRANGE and XREAD of the hub's shared reader)."""
    return is_entry_id(value) and all(int(part) < 2**64 for part in value.split("-"))


async def current_end(redis: Redis, key: str) -> str:
    rows = await redis.xrevrange(key, count=1)
    return text(rows[0][0]) if rows else START


async def missed_events(redis: Redis, key: str, last_id: str) -> bool:
    """Whether events after `last_id` may have been dropped: the entry itself is gone and
    the feed now starts after it (or has expired altogether)."""
    if last_id == START:
        return False
    if await redis.xrange(key, min=last_id, max=last_id, count=1):
        return False
    first = await redis.xrange(key, count=1)
    return not first or entry_id_key(text(first[0][0])) > entry_id_key(last_id)


class FeedReader:
    """Follows one user's feed from just after `last_id`."""

    def __init__(
        self, hub: StreamHub, key: str, last_id: str, settings: Settings, *, gap: bool
    ) -> None:
        self.hub = hub
        self.key = key
        self.last_id = last_id
        self.gap = gap
        self.heartbeat_seconds = settings.sse_heartbeat_seconds
        self.settings = settings

    async def events(self) -> AsyncIterator[FeedEntry | None]:
        """Entries as they come, forever; None marks an idle heartbeat interval. Starts
        with a `feed.reset` notice when the resume point was lost."""
        if self.gap:
            yield reset_entry()
        subscription = await self.hub.subscribe(self.key, self.last_id, FeedEntry.from_redis)
        try:
            while True:
                entry = await subscription.get(self.heartbeat_seconds)
                if entry is not None:
                    self.last_id = entry.id
                yield entry
        finally:
            self.hub.unsubscribe(subscription)


async def open_feed_reader(
    user: User, last_event_id: str | None, *, redis: Redis, hub: StreamHub, settings: Settings
) -> FeedReader:
    """The caller's own feed, after `last_event_id` (its current end when None); 400 for
    an id that is not a feed entry id."""
    if last_event_id is not None and not feed_entry_id(last_event_id):
        raise BadRequest(
            "Invalid last event id: send the `id` of the last event you received, "
            "e.g. 1700000000000-0"
        )
    key = document_feed_key(settings.redis_prefix, user.id)
    if last_event_id is None:
        return FeedReader(hub, key, await current_end(redis, key), settings, gap=False)
    gap = await missed_events(redis, key, last_event_id)
    return FeedReader(hub, key, last_event_id, settings, gap=gap)
