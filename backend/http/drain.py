"""Closing this process's open streams when it shuts down (a rolling deploy).

A stream can last as long as an answer, or hours (the document feed, a WebSocket); a
web process told to stop (SIGTERM, `backend/web_server.py`) must not hold them until
Hypercorn's graceful timeout cuts them, nor end them as if the task were over. Each
resumable stream registers a closer here; `Drain.begin` calls every one: an SSE task
stream or feed ends with `restart_frame` (a comment and a short `retry:`, no terminal
event; the task's lease is released on the way out) and a WebSocket closes with 1012
(Service Restart). The client reconnects with its last event id and lands on another
replica, where the stream continues. Ordinary requests, and streams that cannot be
resumed (the OpenAI-compatible ones), finish as they are (up to WEB_DRAIN_SECONDS).
"""

from __future__ import annotations

from collections.abc import Callable

from quart import Quart

from backend.streams.sse import reconnect_frame

DRAIN_EXTENSION = "drain"
RESTART_MESSAGE = "The server is restarting: reconnect with your last event id"
# EventSource reconnects this soon; the listener is closed by then, so it lands elsewhere.
RESTART_RETRY_MS = 500
CLOSE_SERVICE_RESTART = 1012

Closer = Callable[[], None]


class Drain:
    """The process's open resumable streams, each with the callback that ends it."""

    def __init__(self) -> None:
        self.draining = False
        self.closers: set[Closer] = set()

    def register(self, closer: Closer) -> None:
        """Follow one stream until `unregister`; one opened while draining ends at once."""
        if self.draining:
            closer()
            return
        self.closers.add(closer)

    def unregister(self, closer: Closer) -> None:
        self.closers.discard(closer)

    def begin(self) -> int:
        """End every registered stream; the number ended."""
        self.draining = True
        closers, self.closers = list(self.closers), set()
        for closer in closers:
            closer()
        return len(closers)


def drain_for(app: Quart) -> Drain:
    drain = app.extensions.get(DRAIN_EXTENSION)
    if drain is None:
        drain = Drain()
        app.extensions[DRAIN_EXTENSION] = drain
    return drain


def restart_frame() -> bytes:
    """The last frame of a drained SSE stream: not an event (no parser takes it for one,
    and EventSource keeps its last event id), then `retry:` for a prompt reconnect."""
    return reconnect_frame(RESTART_MESSAGE, RESTART_RETRY_MS)
