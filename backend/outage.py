"""A dependency outage as a long-running process lives through it: retried with capped
exponential back-off, logged once when it starts and once when it ends (with how long it
lasted), never once per attempt, so a minute without Redis is two log lines, not six
hundred."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from backend.dependency_failures import Dependency, dependency_failure

T = TypeVar("T")

FIRST_DELAY_SECONDS = 0.1
MAX_DELAY_SECONDS = 5.0


class Outage:
    def __init__(
        self, dependency: str, log: logging.Logger, *, max_delay: float = MAX_DELAY_SECONDS
    ) -> None:
        """`max_delay`: the back-off's cap; lower for work that must resume within
        moments of the dependency's return (a heartbeat, an answer's tokens)."""
        self.dependency = dependency
        self.log = log
        self.max_delay = max_delay
        self.since: float | None = None
        self.delay = min(FIRST_DELAY_SECONDS, max_delay)

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    async def failed(self, error: BaseException) -> None:
        """One failed attempt: note the outage (logged at its start) and wait before the
        next attempt."""
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning(
                "%s is unreachable (%s: %s); retrying with back-off up to %g s",
                self.dependency,
                type(error).__name__,
                error,
                self.max_delay,
            )
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.max_delay)

    def recovered(self) -> None:
        """An attempt succeeded: the outage, if there was one, is over."""
        if self.since is None:
            return
        self.log.warning("%s is back after %.1f s", self.dependency, time.monotonic() - self.since)
        self.since = None
        self.delay = min(FIRST_DELAY_SECONDS, self.max_delay)


async def through_database_outage(
    attempt: Callable[[], Awaitable[T]],
    *,
    step: str,
    log: logging.Logger,
    retry_seconds: float,
    on_failure: Callable[[], Awaitable[object]] | None = None,
) -> T:
    """`attempt()` (one transaction), retried while the database is unreachable for up
    to `retry_seconds` (0: once), logged as an outage of "The database (`step`)".
    `on_failure` runs after each failed attempt (a settle keeps its task's heartbeat).
    Any other error, or one past the deadline, is raised."""
    outage = Outage(f"The database ({step})", log)
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            result = await attempt()
        except Exception as error:
            failure = dependency_failure(error)
            if (
                failure is None
                or failure.dependency is not Dependency.DATABASE
                or time.monotonic() >= deadline
            ):
                raise
            if on_failure is not None:
                await on_failure()
            await outage.failed(error)
            continue
        outage.recovered()
        return result
