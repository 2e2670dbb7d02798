"""Server-Sent Events framing of a task stream.

Frames use sse-starlette's encoding with `sep="\\n"`: every frame is complete lines
ending in a blank line, which hand-written `\\n\\n` splitters, line readers and
WeChat's chunked readers all parse.

Every stream opens with a frame carrying `retry:` (EventSource's reconnect delay,
`SSE_RETRY_SECONDS`). A stream a POST has just started (whose client has not seen the
task id yet) opens with `event: task` and `{"task_id": …}` in that frame, so a page
reading it with fetch() can cancel the task or resume it on GET …/stream; it has no
`id:`, so it leaves EventSource's last event id alone and is not part of the task's
consumed-once stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sse_starlette import ServerSentEvent

from backend.streams.delivery import TaskReader
from backend.streams.task_stream import StreamEntry

SEPARATOR = "\n"
HEARTBEAT = ServerSentEvent(comment="heartbeat", sep=SEPARATOR).encode()
TASK_EVENT = "task"
MAX_EVENTS_PER_WRITE = 64
# Redis stopped answering mid-stream: the client comes back after about Retry-After.
OUTAGE_RETRY_MS = 5000
OUTAGE_MESSAGE = "Redis is unavailable: reconnect with your last event id"
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Tells nginx not to buffer this response, so tokens are not held back.
    "X-Accel-Buffering": "no",
}


def encode_entry(entry: StreamEntry) -> bytes:
    """The frame sse-starlette would encode, built by one f-string: an entry's id and type
    are single-line by construction and its data is JSON, whose strings escape line
    breaks, so there is nothing to split (a frame per token made this a measurable part
    of the web process's CPU). Data that did hold a line break goes the long way."""
    data = entry.data
    if "\n" in data or "\r" in data:
        return ServerSentEvent(id=entry.id, event=entry.type, data=data, sep=SEPARATOR).encode()
    return f"id: {entry.id}\nevent: {entry.type.value}\ndata: {data}\n\n".encode()


def reconnect_frame(message: str, retry_ms: int) -> bytes:
    """Ends a stream that is not over: a comment (no event, so no parser mistakes it for
    one) and `retry:`, after which EventSource reconnects with its Last-Event-ID; a
    fetch() client does the same on seeing the body end without a terminal event."""
    return f": reconnect: {message}\nretry: {retry_ms}\n\n".encode()


def opening_frame(reader: TaskReader, *, announce_task: bool) -> bytes:
    retry = round(reader.settings.sse_retry_seconds * 1000)
    if not announce_task:
        return ServerSentEvent(retry=retry, sep=SEPARATOR).encode()
    data = json.dumps({"task_id": reader.task_id}, separators=(",", ":"))
    return ServerSentEvent(event=TASK_EVENT, data=data, retry=retry, sep=SEPARATOR).encode()


def waiting(reader: TaskReader) -> int:
    subscription = reader.subscription
    return subscription.waiting if subscription is not None else 0


async def frames(reader: TaskReader, *, announce_task: bool = False) -> AsyncIterator[bytes]:
    """The stream's frames; `announce_task` for a stream the request has just started.

    Events that are already waiting when one is taken go out in the same write (each
    still its own frame with its own id), up to `MAX_EVENTS_PER_WRITE`: under load a
    reader that fell behind catches up with one pass through Quart, Hypercorn and the
    socket instead of one per event.

    A Redis that stops answering ends the stream with `reconnect_frame`, not a broken
    response: the client resumes from its last id once Redis is back.
    """
    try:
        yield opening_frame(reader, announce_task=announce_task)
        async with aclosing(reader.events()) as events:
            async for entry in events:
                if entry is None:
                    yield HEARTBEAT
                    continue
                frame = encode_entry(entry)
                taken = 1
                while not entry.terminal and taken < MAX_EVENTS_PER_WRITE and waiting(reader):
                    following = await anext(events, None)
                    if following is None:  # the delivery ended (superseded, lease lost)
                        break
                    entry, taken = following, taken + 1
                    frame += encode_entry(entry)
                yield frame
    except (RedisConnectionError, RedisTimeoutError):
        yield reconnect_frame(OUTAGE_MESSAGE, OUTAGE_RETRY_MS)
    finally:
        # A client gone right after the opening frame never started `events`, whose
        # own `finally` gives the lease up.
        await reader.close()
