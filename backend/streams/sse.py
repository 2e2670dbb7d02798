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

from sse_starlette import ServerSentEvent

from backend.streams.delivery import TaskReader
from backend.streams.task_stream import StreamEntry

SEPARATOR = "\n"
HEARTBEAT = ServerSentEvent(comment="heartbeat", sep=SEPARATOR).encode()
TASK_EVENT = "task"
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Tells nginx not to buffer this response, so tokens are not held back.
    "X-Accel-Buffering": "no",
}


def encode_entry(entry: StreamEntry) -> bytes:
    return ServerSentEvent(id=entry.id, event=entry.type, data=entry.data, sep=SEPARATOR).encode()


def opening_frame(reader: TaskReader, *, announce_task: bool) -> bytes:
    retry = round(reader.settings.sse_retry_seconds * 1000)
    if not announce_task:
        return ServerSentEvent(retry=retry, sep=SEPARATOR).encode()
    data = json.dumps({"task_id": reader.task_id}, separators=(",", ":"))
    return ServerSentEvent(event=TASK_EVENT, data=data, retry=retry, sep=SEPARATOR).encode()


async def frames(reader: TaskReader, *, announce_task: bool = False) -> AsyncIterator[bytes]:
    """The stream's frames; `announce_task` for a stream the request has just started."""
    try:
        yield opening_frame(reader, announce_task=announce_task)
        async with aclosing(reader.events()) as events:
            async for entry in events:
                yield HEARTBEAT if entry is None else encode_entry(entry)
    finally:
        # A client gone right after the opening frame never started `events`, whose
        # own `finally` gives the lease up.
        await reader.close()
