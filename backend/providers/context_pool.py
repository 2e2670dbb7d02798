"""A bounded set of llama.cpp contexts, lent one per generation, with a first-come line.

A llama.cpp context (one `Llama`: its KV cache and compute buffers) runs one generation
at a time and is not thread-safe, so a single context makes every user wait for every
other. The local provider keeps up to `size` contexts and lends each to one generation;
they load on first need, so a second one exists only once two generations overlap. When
all are lent, a generation waits in line and is told its place each time it changes, so
its task can say it is queued behind others instead of looking stalled.

A context comes back from the generation's own thread when it has finished with it
(never while llama.cpp may still write to it). Waiters are asyncio code, possibly on
several event loops, so the pool's state is guarded by a threading lock and each waiter
is woken through its own loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from typing import Any


class Slot:
    """One of the pool's places; `llama` is loaded by the first generation that uses it."""

    def __init__(self) -> None:
        self.llama: Any | None = None


class Ticket:
    """A generation's claim on the pool: `slot` once granted, `position` in line until then."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.changed = asyncio.Event()
        self.slot: Slot | None = None
        self.position = 0

    def wake(self) -> None:
        with suppress(RuntimeError):  # its loop has closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(self.changed.set)


class ContextPool:
    def __init__(self, size: int, load: Callable[[], Any]) -> None:
        self.size = size
        self.load = load
        self.lock = threading.Lock()
        self.idle: list[Slot] = []
        self.created = 0
        self.line: deque[Ticket] = deque()
        self.closed = False

    def join(self) -> Ticket:
        """Claim a context: granted at once when one is idle or may still be created,
        otherwise a place at the end of the line."""
        ticket = Ticket(asyncio.get_running_loop())
        with self.lock:
            if self.idle:
                ticket.slot = self.idle.pop()
            elif self.created < self.size:
                self.created += 1
                ticket.slot = Slot()
            else:
                self.line.append(ticket)
                ticket.position = len(self.line)
        return ticket

    async def places(self, ticket: Ticket) -> AsyncIterator[int]:
        """The ticket's place in line each time it changes, until it is granted a slot."""
        told = 0
        while True:
            ticket.changed.clear()
            with self.lock:
                granted, position = ticket.slot is not None, ticket.position
            if granted:
                return
            if position != told:
                told = position
                yield position
            await ticket.changed.wait()

    def give_back(self, slot: Slot) -> None:
        """Return a context (from any thread): to the first in line, else to the idle set."""
        if self.closed:
            self.free(slot)
        with self.lock:
            if not self.line:
                self.idle.append(slot)
                return
            first = self.line.popleft()
            first.slot, first.position = slot, 0
            moved = [first, *self.renumber()]
        for ticket in moved:
            ticket.wake()

    def leave(self, ticket: Ticket) -> None:
        """A generation gave up before using its claim: out of the line, or its slot back."""
        with self.lock:
            moved = []
            if ticket in self.line:
                self.line.remove(ticket)
                moved = self.renumber()
            slot, ticket.slot = ticket.slot, None
        for waiting in moved:
            waiting.wake()
        if slot is not None:
            self.give_back(slot)

    def renumber(self) -> list[Ticket]:
        """Places after someone left the line (lock held); the tickets that moved."""
        moved = []
        for place, ticket in enumerate(self.line, 1):
            if ticket.position != place:
                ticket.position = place
                moved.append(ticket)
        return moved

    def free(self, slot: Slot) -> None:
        if slot.llama is not None:
            with suppress(Exception):
                slot.llama.close()
            slot.llama = None

    def close(self) -> None:
        """Free the idle contexts now and the lent ones as they come back (a generation
        started after this loads its context again)."""
        with self.lock:
            self.closed = True
            for slot in self.idle:
                self.free(slot)

    @property
    def waiting(self) -> int:
        return len(self.line)
