"""Server-Sent Events framing of a task stream.

Frames use sse-starlette's encoding with `sep="\\n"`: every frame is complete lines
ending in a blank line, which hand-written `\\n\\n` splitters, line readers and
WeChat's chunked readers all parse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from sse_starlette import ServerSentEvent

from backend.streams.delivery import TaskReader
from backend.streams.task_stream import StreamEntry

SEPARATOR = "\n"
HEARTBEAT = ServerSentEvent(comment="heartbeat", sep=SEPARATOR).encode()
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Tells nginx not to buffer this response, so tokens are not held back.
    "X-Accel-Buffering": "no",
}


def encode_entry(entry: StreamEntry) -> bytes:
    return ServerSentEvent(id=entry.id, event=entry.type, data=entry.data, sep=SEPARATOR).encode()


async def frames(reader: TaskReader) -> AsyncIterator[bytes]:
    async with aclosing(reader.events()) as events:
        async for entry in events:
            yield HEARTBEAT if entry is None else encode_entry(entry)
