"""A step of a document's run that meets a dependency outage waits it out.

PostgreSQL restarting, Redis failing over or the search store down for a minute is not
the document's fault: ending its run FAIL (or letting the sweeper take it for dead, which
spends one of its INGEST_MAX_RESTARTS) throws the parse away for a fault that fixes
itself. The job keeps its lease (`run_watch.py` refreshes it through SQL outages and takes
it back after a Redis one), so while it retries no other worker restarts the document.
The step is tried again with capped back-off (`backend/outage.py`: logged once when the
outage starts and once when it ends) for up to INGEST_OUTAGE_RETRY_SECONDS; past that the
run ends FAIL saying which step met which outage ("Indexing failed. The search store is
unavailable (…)"), not "parsing failed".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from backend.dependency_failures import Dependency, dependency_failure
from backend.outage import Outage
from backend.search.store import SearchStoreUnavailable

log = logging.getLogger("sluice.ingest")

T = TypeVar("T")

DEPENDENCY_NAMES = {Dependency.DATABASE: "the database", Dependency.REDIS: "Redis"}


class StepUnavailable(Exception):
    """A step met a dependency outage longer than the retry budget."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step} failed. {reason}")
        self.step = step
        self.reason = reason


def outage_of(error: BaseException) -> tuple[str, str] | None:
    """(the dependency's name, the reason for the user) when `error` is an outage."""
    if isinstance(error, SearchStoreUnavailable):
        return "the search store", f"The search store is unavailable ({error})"
    failure = dependency_failure(error)
    if failure is None:
        return None
    return DEPENDENCY_NAMES[failure.dependency], failure.message.split(";")[0]


async def retried(step: str, attempt: Callable[[], Awaitable[T]], budget_seconds: float) -> T:
    """`attempt()`, tried again while it fails with a dependency outage, for up to
    `budget_seconds`; any other error is raised at once."""
    deadline = time.monotonic() + budget_seconds
    outage: Outage | None = None
    while True:
        try:
            result = await attempt()
        except Exception as error:
            found = outage_of(error)
            if found is None:
                raise
            if time.monotonic() >= deadline:
                raise StepUnavailable(step, found[1]) from error
            if outage is None:
                outage = Outage(f"{found[0]} ({step.lower()})", log)
            await outage.failed(error)
            continue
        if outage is not None:
            outage.recovered()
        return result
