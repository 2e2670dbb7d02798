"""Turns at the local embedding model for questions: a few at once, short ones first.

A question is embedded where it is asked (the web process for `POST /api/v1/retrieval`,
the chat worker for a RAG turn) on the same cores as everyone else's. Before this line,
one lock per process served questions in arrival order: four maximum-length questions
made another user's 22 ms retrieval take 45 s. Now:

- questions never wait for document batches (those take the provider's own lock);
- `slots` questions run at once; waiters are served fewest tokens first (arrival order
  among equals);
- long questions (over SHORT_QUESTION_TOKENS) hold at most `slots - 1` slots, so one is
  always left for short ones: a short question waits at most for other short ones
  (milliseconds each), never for a long one (up to 0.6 s of CPU, once cut to e5's
  window; backend/providers/embedding_input.py).

Waiters are asyncio code, possibly on several event loops (tests, several apps), so the
state is guarded by a threading lock and each waiter is woken through its own loop, as
in `context_pool.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

SHORT_QUESTION_TOKENS = 64


@dataclass(order=True)
class Waiter:
    tokens: int
    arrival: int
    loop: asyncio.AbstractEventLoop = field(compare=False)
    woken: asyncio.Event = field(compare=False, default_factory=asyncio.Event)
    granted: bool = field(compare=False, default=False)

    @property
    def long(self) -> bool:
        return self.tokens > SHORT_QUESTION_TOKENS

    def wake(self) -> None:
        with suppress(RuntimeError):  # its loop has closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(self.woken.set)


class QueryLine:
    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        # Long questions may fill every slot only when there is a single one.
        self.long_slots = max(1, self.slots - 1)
        self.lock = threading.Lock()
        self.busy = 0
        self.busy_long = 0
        self.waiting: list[Waiter] = []
        self.arrivals = itertools.count()

    def allowed(self, waiter: Waiter) -> bool:
        """Whether a free slot may go to `waiter` now (lock held)."""
        if self.busy >= self.slots:
            return False
        return not waiter.long or self.busy_long < self.long_slots

    def take(self, waiter: Waiter) -> None:
        self.busy += 1
        self.busy_long += waiter.long
        waiter.granted = True

    def grant_waiting(self) -> list[Waiter]:
        """Hand free slots to waiters, fewest tokens first (lock held); those granted."""
        granted = []
        for waiter in sorted(self.waiting):
            if self.allowed(waiter):
                self.take(waiter)
                granted.append(waiter)
        for waiter in granted:
            self.waiting.remove(waiter)
        return granted

    def release(self, waiter: Waiter) -> None:
        with self.lock:
            self.busy -= 1
            self.busy_long -= waiter.long
            granted = self.grant_waiting()
        for other in granted:
            other.wake()

    @asynccontextmanager
    async def turn(self, tokens: int) -> AsyncIterator[None]:
        """Hold a slot for one question of `tokens` tokens."""
        waiter = Waiter(tokens, next(self.arrivals), asyncio.get_running_loop())
        with self.lock:
            self.waiting.append(waiter)
            granted = self.grant_waiting()
        for other in granted:
            if other is not waiter:
                other.wake()
        try:
            while not waiter.granted:
                await waiter.woken.wait()
                waiter.woken.clear()
        except BaseException:
            with self.lock:
                queued = waiter in self.waiting
                if queued:
                    self.waiting.remove(waiter)
            if not queued:
                self.release(waiter)
            raise
        try:
            yield
        finally:
            self.release(waiter)

    @property
    def queued(self) -> int:
        return len(self.waiting)
