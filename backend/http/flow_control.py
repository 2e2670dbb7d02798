"""Backpressure for request bodies that a route reads as a stream.

Quart reads a request's body from the server as fast as it arrives and buffers it until
the route takes it: a route that streams an upload to disk still ends up holding most of
it in memory whenever the network is faster than the disk. Here reading from the server
pauses while HIGH_WATER_BYTES wait unread; Hypercorn then stops reading the socket, and
TCP slows the client down. A route that awaits the whole body (JSON, `get_data`) lifts
the pause: it needs it all anyway, and backend/http/body_limits.py bounds its size. A
route that never reads a large body just answers; the connection then closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from hypercorn.typing import ASGIReceiveCallable
from quart.asgi import ASGIHTTPConnection
from quart.wrappers import Request
from quart.wrappers.request import Body

HIGH_WATER_BYTES = 1024 * 1024


class FlowControlledBody(Body):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None):
        super().__init__(expected_content_length, max_content_length)
        # Set once the route awaits the whole body: then there is nothing to pace.
        self.whole = False
        self.room = asyncio.Event()
        self.room.set()

    def __await__(self) -> Generator[Any, None, Any]:
        self.whole = True
        self.room.set()
        return super().__await__()

    async def __anext__(self) -> bytes:
        try:
            return await super().__anext__()
        finally:
            self.room.set()

    def append(self, data: bytes) -> None:
        super().append(data)
        if not self.whole and len(self._data) >= HIGH_WATER_BYTES:
            self.room.clear()

    async def wait_for_room(self) -> None:
        """Returns once the route has taken what is buffered, or awaits the whole body."""
        if not self.whole and len(self._data) >= HIGH_WATER_BYTES:
            await self.room.wait()


class FlowControlledConnection(ASGIHTTPConnection):
    """Quart's HTTP connection, asking the server for more body only when there is room."""

    async def handle_messages(self, request: Request, receive: ASGIReceiveCallable) -> None:
        body = request.body
        while True:
            if isinstance(body, FlowControlledBody):
                await body.wait_for_room()
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
            elif message["type"] == "http.disconnect":
                return
