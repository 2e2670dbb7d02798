"""Relaying a provider's stream into a task's event stream, coalesced.

A pump task reads the provider into a queue; the relay loop drains everything that is
already waiting into one `token` event, so a fast model costs one XADD per burst, not
per token. The first token is sent at once (it is what the user waits for); after it,
the relay waits `window` seconds before draining, to gather the deltas that arrive
within a few milliseconds of each other. `window` may be a function, read before each
gathering: the worker widens it under load (workers/jobs/coalescing.py). A cancel puts
a marker in the same queue, so it interrupts the relay even while the provider is
silent; the pump is then cancelled, which closes the upstream connection. A provider's
`Queued` notice (the request waits for the model behind others) is passed to
`on_queued` as soon as it arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from enum import StrEnum

from backend.providers.base import Delta, Queued, StreamEvent, Usage


class Ending(StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class _Marker(StrEnum):
    END = "end"
    CANCEL = "cancel"


@dataclass
class Relayed:
    ending: Ending = Ending.COMPLETED
    text: list[str] = field(default_factory=list)
    usage: Usage | None = None
    error: Exception | None = None

    @property
    def answer(self) -> str:
        return "".join(self.text)


class Relay:
    def __init__(
        self,
        upstream: AsyncIterator[StreamEvent],
        send: Callable[[str], Awaitable[object]],
        *,
        window: float | Callable[[], float],
        on_queued: Callable[[int], Awaitable[object]] | None = None,
    ) -> None:
        self.upstream = upstream
        self.send = send
        self.window = window
        self.on_queued = on_queued
        self.queue: asyncio.Queue[StreamEvent | Exception | _Marker] = asyncio.Queue()
        self.result = Relayed()
        self.pumping: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        """Thread-unsafe but loop-safe: called from the watch loop of the same event loop."""
        self.queue.put_nowait(_Marker.CANCEL)

    async def pump(self) -> None:
        try:
            async for item in self.upstream:
                self.queue.put_nowait(item)
            self.queue.put_nowait(_Marker.END)
        except Exception as error:
            self.queue.put_nowait(error)
        finally:
            aclose = getattr(self.upstream, "aclose", None)
            if aclose is not None:
                with suppress(Exception):
                    await aclose()

    def start(self) -> None:
        """Send the provider's request now (once; `run` does if nobody did): a caller
        with a round trip of its own to make first overlaps it with the request, which
        the first token waits for."""
        if self.pumping is None:
            self.pumping = asyncio.create_task(self.pump())

    async def stop(self) -> None:
        """Cancel the provider's request and reading, if they still run (a caller that
        started them and failed before `run`; `run` stops them itself)."""
        pump = self.pumping
        if pump is not None and not pump.done():
            pump.cancel()
            with suppress(asyncio.CancelledError):
                await pump

    async def run(self) -> Relayed:
        self.start()
        try:
            await self.relay()
        finally:
            await self.stop()
        return self.result

    async def relay(self) -> None:
        first = True
        while True:
            burst: list[str] = []
            item = await self.queue.get()
            if isinstance(item, Queued):
                if self.on_queued is not None:
                    await self.on_queued(item.position)
                continue
            ended = self.take(item, burst)
            if not ended and not first and (window := self.gathering()) > 0:
                await asyncio.sleep(window)
            while not ended and not self.queue.empty():
                ended = self.take(self.queue.get_nowait(), burst)
            if burst:
                await self.send("".join(burst))
                first = False
            if ended:
                return

    def gathering(self) -> float:
        return self.window() if callable(self.window) else self.window

    def take(self, item: StreamEvent | Exception | _Marker, burst: list[str]) -> bool:
        """Fold one queue item into the result; True when the stream has ended."""
        if isinstance(item, Delta):
            if item.text:
                burst.append(item.text)
                self.result.text.append(item.text)
            return False
        if isinstance(item, Usage):
            self.result.usage = item
            return False
        if isinstance(item, Queued):  # only ever before the first token; nothing to add
            return False
        if item is _Marker.CANCEL:
            self.result.ending = Ending.CANCELLED
        elif isinstance(item, Exception):
            self.result.ending = Ending.FAILED
            self.result.error = item
        return True
