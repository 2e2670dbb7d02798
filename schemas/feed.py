"""Events of a user's document status feed (`GET /api/v1/events`, WebSocket
`subscribe_feed`).

On SSE each event is one frame: `id:` (the feed's Redis Stream entry id, for
Last-Event-ID), `event:` (the type) and `data:` (this model's JSON without `type`). On
the WebSocket the same JSON arrives with `type` and `id` added. Unlike a task stream the
feed is not consumed by reading it: every connection of the user sees every event, and
a reconnect resumes after the last id it saw, within the feed's retention.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from schemas.documents import Run


class FeedEventType(StrEnum):
    PROGRESS = "document.progress"
    DONE = "document.done"
    FAILED = "document.failed"
    CANCELLED = "document.cancelled"
    # Not stored in the feed: sent first to a reader resuming from an id that is no
    # longer kept, since it may have missed events (read the documents' state again).
    RESET = "feed.reset"


class DocumentEvent(BaseModel):
    """A document's parsing state changed, or a reminder that it is still being worked
    on (at least every PROGRESS_HEARTBEAT_SECONDS, 2 s, while its run is in a worker).
    `progress_msg` is the newest line of the document's log (the whole log is in the
    document's `progress_msg`) or, between steps, what the worker is doing now."""

    type: FeedEventType
    document_id: str
    dataset_id: str
    document_name: str
    run: Run
    progress: float = Field(ge=0, le=1)
    progress_msg: str
    chunk_count: int = 0
    token_count: int = 0
    process_duration: float = Field(0.0, description="Seconds spent parsing so far")
    chunks_done: int | None = Field(
        None, description="While embedding: chunks embedded so far (of `chunks_total`)"
    )
    chunks_total: int | None = Field(None, description="While embedding: the document's chunks")
    eta_seconds: float | None = Field(
        None, description="While embedding: seconds left at the speed measured so far"
    )
    timestamp: int = Field(description="Milliseconds since the epoch")


class FeedResetEvent(BaseModel):
    type: FeedEventType = FeedEventType.RESET
    message: str
