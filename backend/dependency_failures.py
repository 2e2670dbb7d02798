"""Which dependency an exception says is unavailable: the SQL database or Redis.

A request or a job that fails because PostgreSQL is restarting, SQLite is locked past its
busy timeout or Redis is gone has not met a bug: the client should retry (503 with
`Retry-After`), a worker should retry the step, and neither should read "internal error".
The drivers raise many shapes for it (asyncpg's connection errors, a raw
`ConnectionRefusedError` from asyncpg's connect, Tortoise's `OperationalError` wrapping
`sqlite3.OperationalError`, redis-py's `ConnectionError`/`TimeoutError`), often chained
under other exceptions, so this walks the cause chain and names the first one it knows.

SQLite is a local file, so it has no outage in the network sense; what a request can meet
is the lock held past `busy_timeout` (503 "busy": retrying works), an I/O error or a file it
cannot open (503 "unavailable") and a full disk (507, as file storage answers it). Any
other SQLite error (no such table, a constraint) is a bug or a conflict and stays so.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

import asyncpg
from redis import exceptions as redis_errors
from tortoise.exceptions import DBConnectionError

RETRY_AFTER_SECONDS = 5
CHAIN_LIMIT = 12


class Dependency(StrEnum):
    DATABASE = "database"
    REDIS = "redis"


@dataclass(frozen=True)
class DependencyFailure:
    """What to tell the client: the dependency, the status and a message naming it."""

    dependency: Dependency
    status: int
    message: str
    retry_after: int = RETRY_AFTER_SECONDS


DATABASE_UNAVAILABLE = DependencyFailure(
    Dependency.DATABASE, 503, "The database is unavailable; retry shortly"
)
DATABASE_BUSY = DependencyFailure(
    Dependency.DATABASE, 503, "The database is busy (locked by another writer); retry shortly"
)
DATABASE_FULL = DependencyFailure(
    Dependency.DATABASE, 507, "The database's disk is full; retry once space is freed", 60
)
REDIS_UNAVAILABLE = DependencyFailure(
    Dependency.REDIS, 503, "Redis (queues and streams) is unavailable; retry shortly"
)

# asyncpg errors that mean the server or the connection is gone, not that a query is bad.
POSTGRES_GONE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    DBConnectionError,
)
# What asyncpg (through Tortoise) raises on the next use of a connection a restart broke
# mid-operation: "connection is closed", "…: connection has been released back to the
# pool", and, for the protocol left mid-operation, "cannot switch to state 15; another
# operation (2) is in progress" (seen settling answers in bench/bench_chaos.py's long run).
CONNECTION_BROKEN = ("closed", "released back to the pool")
REDIS_GONE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
)
SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")
SQLITE_UNAVAILABLE = ("disk i/o error", "unable to open database file")
SQLITE_FULL = ("database or disk is full",)


def raised_in_driver(traceback: TracebackType | None, package: str) -> bool:
    """True when a frame of `package` is on the traceback: asyncpg's connect lets the
    socket's own OSError out, which only its origin tells apart from any other."""
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if module == package or module.startswith(package + "."):
            return True
        traceback = traceback.tb_next
    return False


def classify_one(error: BaseException) -> DependencyFailure | None:
    if isinstance(error, REDIS_GONE):
        return REDIS_UNAVAILABLE
    if isinstance(error, POSTGRES_GONE):
        return DATABASE_UNAVAILABLE
    if isinstance(error, asyncpg.InterfaceError) and any(
        words in str(error) for words in CONNECTION_BROKEN
    ):
        return DATABASE_UNAVAILABLE
    if isinstance(error, asyncpg.InternalClientError) and "cannot switch to state" in str(error):
        return DATABASE_UNAVAILABLE
    if isinstance(error, OSError | TimeoutError) and raised_in_driver(
        error.__traceback__, "asyncpg"
    ):
        return DATABASE_UNAVAILABLE
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        if text.startswith(SQLITE_BUSY):
            return DATABASE_BUSY
        if text.startswith(SQLITE_UNAVAILABLE):
            return DATABASE_UNAVAILABLE
        if text.startswith(SQLITE_FULL):
            return DATABASE_FULL
    return None


def linked(error: BaseException) -> list[BaseException]:
    """The exceptions `error` was raised from or during, and the one Tortoise passes as
    its argument (`OperationalError(exc)` without `from`)."""
    found = [error.__cause__, error.__context__]
    found += [arg for arg in error.args if isinstance(arg, BaseException)]
    return [item for item in found if item is not None]


def dependency_failure(error: BaseException) -> DependencyFailure | None:
    """The unavailable dependency `error` (or an exception it was raised from) names, or
    None when it is something else."""
    pending = [error]
    seen: set[int] = set()
    while pending and len(seen) < CHAIN_LIMIT:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        failure = classify_one(current)
        if failure is not None:
            return failure
        pending.extend(linked(current))
    return None
