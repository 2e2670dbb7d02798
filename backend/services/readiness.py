"""Readiness: which dependency a process cannot reach, each named, answered in bounded time.

Every dependency is a named `Probe` (an awaitable that raises when it is down, its message
the reason). `ReadinessProbes` runs them all at once and gives each READINESS_TIMEOUT_SECONDS;
one that has not answered by then is reported down ("no answer in 1.5 s") and left
behind, cancelled but not awaited, so a probe stuck in a half-open TCP connection (or
one that ignores its cancellation) cannot hold `/readyz` past the timeout.

The app registers SQL, Redis and the search store at start (`standard_probes`); any
other part adds its own with `probes.add(name, probe)` from `app.config["READINESS"]`
(file storage does). Names are what an operator reads in the 503: "sql", "redis",
"search store", "storage".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from tortoise import connections

from backend.search.stores import search_store

Probe = Callable[[float], Awaitable[object]]
SQL = "sql"
REDIS = "redis"
SEARCH = "search store"


class ReadinessProbes:
    def __init__(self) -> None:
        self.probes: dict[str, Probe] = {}

    def add(self, name: str, probe: Probe) -> None:
        """`probe(within)` raises (its message the reason) when `name` is down;
        `within` is the seconds it is given (it is abandoned after them anyway)."""
        self.probes[name] = probe

    async def down(self, within: float) -> dict[str, str]:
        """Every dependency that did not answer within `within` seconds, with why."""
        tasks = {name: asyncio.ensure_future(probe(within)) for name, probe in self.probes.items()}
        if not tasks:
            return {}
        await asyncio.wait(tasks.values(), timeout=within)
        failures: dict[str, str] = {}
        for name, task in tasks.items():
            if not task.done():
                task.cancel()
                task.add_done_callback(_consume)
                failures[name] = f"no answer in {within:g} s"
            elif task.cancelled():
                failures[name] = "cancelled"
            elif (exc := task.exception()) is not None:
                failures[name] = str(exc) or type(exc).__name__
        return failures


def _consume(task: asyncio.Future[object]) -> None:
    """Fetch a left-behind probe's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def standard_probes(redis: Callable[[], Redis]) -> ReadinessProbes:
    """SQL, Redis (`redis()`: the process's client, made at start) and the search store."""
    probes = ReadinessProbes()
    probes.add(SQL, sql_probe)
    probes.add(REDIS, lambda within: redis_probe(redis()))
    probes.add(SEARCH, lambda within: search_store().check(within))
    return probes


async def sql_probe(within: float) -> None:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as exc:
        raise RuntimeError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc


async def redis_probe(redis: Redis) -> None:
    try:
        await redis.ping()
    except Exception as exc:
        raise RuntimeError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc


def down_message(failures: dict[str, str]) -> str:
    """ "Not ready: sql (reason); search store (reason)" in probe order."""
    return "Not ready: " + "; ".join(f"{name} ({reason})" for name, reason in failures.items())
