"""Relaying a provider's stream into a task's event stream, coalesced.

A pump task reads the provider into a pending list, a network read at a time when the
provider offers its `bursts`; the relay loop drains everything that is already waiting
into one `token` event, so a fast model costs one XADD per burst, not
per token. The first token is sent at once (it is what the user waits for); after it,
the relay waits `window` seconds before draining, to gather the deltas that arrive
within a few milliseconds of each other. `window` may be a function, read before each
gathering: the worker widens it under load (workers/jobs/coalescing.py). A cancel puts
a marker in the same list, so it interrupts the relay even while the provider is
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

from backend.providers.base import Burst, Delta, Queued, StreamEvent, Usage


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


# What the pump hands the relay: a delta's text (bare, from a provider's bursts, or as a
# `Delta`), the usage, a queue notice, the failure that ended the stream, or a marker.
Item = str | StreamEvent | Exception | _Marker


class Relay:
    """Relays `upstream`: a provider's events one at a time (`stream`), or its bursts,
    a list of events per network read (`bursts`, which the chat worker prefers)."""

    def __init__(
        self,
        upstream: AsyncIterator[StreamEvent] | AsyncIterator[Burst],
        send: Callable[[str], Awaitable[object]],
        *,
        window: float | Callable[[], float],
        on_queued: Callable[[int], Awaitable[object]] | None = None,
    ) -> None:
        self.upstream = upstream
        self.send = send
        self.window = window
        self.on_queued = on_queued
        # What the pump read and the relay has not taken yet, in order: a list the pump
        # extends a read at a time, and a future the pump completes only when the relay
        # waits on an empty list (an `asyncio.Queue` cost a put, and a wake-up while the
        # relay gathered, per token).
        self.pending: list[Item] = []
        self.waiter: asyncio.Future[None] | None = None
        # `gathers` once the first token is out (it went at once; later ones are gathered):
        # then a read that finds the relay waiting starts its gathering window here, with
        # a timer that wakes it when the window is over (`ripe`): the relay wakes once a
        # burst, not once to start sleeping and once more when its sleep ends.
        self.gathers = False
        self.timer: asyncio.TimerHandle | None = None
        self.ripe = False
        self.result = Relayed()
        self.pumping: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        """Thread-unsafe but loop-safe: called from the watch loop of the same event loop."""
        self.pending.append(_Marker.CANCEL)
        if self.timer is not None:  # what was gathered goes out with the cancel, now
            self.timer.cancel()
            self.timer = None
            self.ripe = True
        self.wake()

    def ripen(self) -> None:
        self.timer = None
        self.ripe = True
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def pump(self) -> None:
        try:
            async for item in self.upstream:
                if type(item) is list:
                    self.pending += item
                else:
                    self.pending.append(item)
                if self.waiter is not None and self.timer is None:
                    self.arrived()
            self.pending.append(_Marker.END)
        except Exception as error:
            self.pending.append(error)
        finally:
            if self.timer is None:  # else the relay wakes when its window is over
                self.wake()
            aclose = getattr(self.upstream, "aclose", None)
            if aclose is not None:
                with suppress(Exception):
                    await aclose()

    def arrived(self) -> None:
        """The waiting relay's wake-up for what the pump just handed over: now for the
        first token, or after the window the relay would have slept."""
        if self.gathers and (window := self.gathering()) > 0:
            self.timer = asyncio.get_running_loop().call_later(window, self.ripen)
        else:
            self.wake()

    def start(self) -> None:
        """Send the provider's request now (once; `run` does if nobody did): a caller
        with a round trip of its own to make first overlaps it with the request, which
        the first token waits for."""
        if self.pumping is None:
            self.pumping = asyncio.create_task(self.pump())

    async def stop(self) -> None:
        """Cancel the provider's request and reading, if they still run (a caller that
        started them and failed before `run`; `run` stops them itself)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
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

    async def arrival(self) -> None:
        """Until the pump has handed over something."""
        loop = asyncio.get_running_loop()
        while not self.pending:
            self.waiter = loop.create_future()
            await self.waiter

    async def relay(self) -> None:
        while True:
            if not self.pending:
                await self.arrival()
            head = self.pending[0]
            if isinstance(head, Queued):
                del self.pending[0]
                if self.on_queued is not None:
                    await self.on_queued(head.position)
                continue
            if self.ripe:
                self.ripe = False
            elif self.gathers and not ends(head) and (window := self.gathering()) > 0:
                await asyncio.sleep(window)
            items, self.pending = self.pending, []
            burst: list[str] = []
            ended = False
            for item in items:
                if type(item) is str:
                    if item:
                        burst.append(item)
                elif self.take(item, burst):
                    ended = True
                    break
            if burst:
                text = "".join(burst)
                self.result.text.append(text)
                await self.send(text)
                self.gathers = True
            if ended:
                return

    def gathering(self) -> float:
        return self.window() if callable(self.window) else self.window

    def take(self, item: Item, burst: list[str]) -> bool:
        """Fold one item other than a bare text into the burst or the result; True when
        the stream has ended."""
        if isinstance(item, Delta):
            if item.text:
                burst.append(item.text)
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


def ends(item: Item) -> bool:
    """Whether the item ends the stream (then nothing is gathered after it)."""
    return isinstance(item, _Marker | Exception)
