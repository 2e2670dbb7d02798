"""Readiness: which dependency a process cannot reach, each named, answered in bounded time.

Every dependency is a named `Probe` (an awaitable that raises when it is down, its message
the reason). `ReadinessProbes` runs them all at once and gives each READINESS_TIMEOUT_SECONDS;
one that has not answered by then is reported down ("no answer in 1.5 s") and left
behind, cancelled but not awaited, so a probe stuck in a half-open TCP connection (or
one that ignores its cancellation) cannot hold `/readyz` past the timeout.

The app registers SQL, Redis, the search store and each queue's workers at start
(`standard_probes`; a queue with no live worker leaves the process ready, "degraded",
unless READINESS_REQUIRES_WORKERS); any
other part adds its own with `probes.add(name, probe)` from `app.config["READINESS"]`
(file storage does). Names are what an operator reads in the 503: "sql", "redis",
"search store", "storage", "chat workers", "ingest workers".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from tortoise import connections

from backend.constants import CHAT_QUEUE, INGEST_QUEUE, worker_health_key
from backend.search.stores import search_store
from backend.settings import Settings

Probe = Callable[[float], Awaitable[object]]
SQL = "sql"
REDIS = "redis"
SEARCH = "search store"


class ReadinessProbes:
    def __init__(self) -> None:
        self.probes: dict[str, Probe] = {}
        # Names whose failure is reported but leaves the process ready ("degraded").
        self.advisory: set[str] = set()

    def add(self, name: str, probe: Probe, *, required: bool = True) -> None:
        """`probe(within)` raises (its message the reason) when `name` is down;
        `within` is the seconds it is given (it is abandoned after them anyway).
        A probe that is not `required` is reported without making the process unready."""
        self.probes[name] = probe
        if not required:
            self.advisory.add(name)

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


def standard_probes(redis: Callable[[], Redis], settings: Settings) -> ReadinessProbes:
    """SQL, Redis (`redis()`: the process's client, made at start), the search store and
    each queue's workers (required only with READINESS_REQUIRES_WORKERS)."""
    probes = ReadinessProbes()
    probes.add(SQL, sql_probe)
    probes.add(REDIS, lambda within: redis_probe(redis()))
    probes.add(SEARCH, lambda within: search_store().check(within))
    for queue in (CHAT_QUEUE, INGEST_QUEUE):
        key = worker_health_key(settings.redis_prefix, queue)
        probes.add(
            f"{queue} workers",
            lambda within, key=key: worker_probe(redis(), key),
            required=settings.readiness_requires_workers,
        )
    return probes


async def worker_probe(redis: Redis, health_key: str) -> None:
    """A queue has a live worker while arq's health-check key exists (rewritten every 10 s
    with an 11 s expiry, deleted when the worker stops)."""
    try:
        alive = await redis.exists(health_key)
    except Exception as exc:
        raise RuntimeError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
    if not alive:
        raise RuntimeError("no live worker (no worker heartbeat in Redis)")


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


def down_message(failures: dict[str, str], label: str = "Not ready") -> str:
    """ "Not ready: sql (reason); search store (reason)" in probe order."""
    return f"{label}: " + "; ".join(f"{name} ({reason})" for name, reason in failures.items())
