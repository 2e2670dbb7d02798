"""One reader's subscription to one task stream, as the stream hub feeds it.

Kept apart from the hub because it is what every open SSE stream and WebSocket holds
while idle: its size is the memory per idle stream (tests/test_subscription_memory.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from backend.streams.task_stream import StreamEntry, entry_id_key


class Subscription:
    """One reader's view of one stream: entries strictly after `cursor`, in order, once.

    Entries wait in a deque and a `get` waits on one future with one timer: an
    `asyncio.Queue` (three deques and an event, ~3.3 KB) and an `asyncio.timeout` per
    `get` cost every idle open stream memory and every delivered event CPU.
    """

    __slots__ = ("cursor", "entries", "key", "pending", "waiter")

    def __init__(self, key: str, last_id: str) -> None:
        self.key = key
        self.cursor = entry_id_key(last_id)
        self.entries: deque[StreamEntry | None] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.pending: list[StreamEntry] | None = []

    def offer(self, entries: Iterable[StreamEntry]) -> None:
        if self.pending is not None:
            self.pending.extend(entries)
            return
        self.deliver(entries)

    def deliver(self, entries: Iterable[StreamEntry]) -> None:
        for entry in entries:
            position = entry_id_key(entry.id)
            if position > self.cursor:
                self.cursor = position
                self.put(entry)

    def caught_up(self, entries: list[StreamEntry]) -> None:
        held, self.pending = self.pending or [], None
        self.deliver(entries)
        self.deliver(held)

    def put(self, item: StreamEntry | None) -> None:
        self.entries.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def waiting(self) -> int:
        """Entries delivered to this subscription and not taken yet."""
        return len(self.entries)

    def wake(self) -> None:
        """Make a waiting `get` return None now, as if its time had run out."""
        self.put(None)

    async def get(self, within: float) -> StreamEntry | None:
        """The next entry, or None if none arrived within `within` seconds (or on `wake`)."""
        if not self.entries:
            loop = asyncio.get_running_loop()
            waiter = self.waiter = loop.create_future()
            timer = loop.call_later(within, _time_up, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self.waiter = None
        return self.entries.popleft() if self.entries else None


def _time_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
