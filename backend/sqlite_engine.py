"""Tortoise's SQLite engine, with transactions that take the write lock as they begin.

Tortoise opens a SQLite transaction with two calls to aiosqlite's thread (a COMMIT of
nothing, then BEGIN), and Sluice's transactions all write, so `credits.atomically`
added a no-op write first to take the lock (a transaction that reads first fails at
once with "database is locked" when another process writes meanwhile). Each call is a
hop to aiosqlite's thread and back; an answer's two transactions paid six of them for
this. `BEGIN IMMEDIATE` takes the write lock (waiting in SQLite's busy timeout) in one.
Used for the service's connections (`backend.database.open_database`); migrations keep
Tortoise's own engine.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connections
from tortoise.exceptions import TransactionManagementError


class ImmediateTransactionWrapper(SqliteTransactionWrapper):
    """A transaction that holds SQLite's write lock from its first statement on."""

    async def begin(self) -> None:
        try:
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class ImmediateTransactionContext(SqliteTransactionContext):
    """Tortoise's context, undone when BEGIN fails.

    Tortoise takes the connection's lock and makes the transaction the task's connection
    before BEGIN, and undoes both only in `__aexit__`, which does not run when
    `__aenter__` raises. A BEGIN IMMEDIATE that found the database locked past the busy
    timeout thus left the lock taken (every later transaction of the process waited for
    ever) and the failed transaction as the task's connection: a retry in the same task
    then ran as a "nested" transaction that never committed, so a worker sent `done`
    for an answer that was never stored (tests/test_settle_outage.py).
    """

    async def __aenter__(self) -> Any:
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            try:
                await self.connection.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
        except BaseException:
            self._trxlock.release()
            raise
        return self.connection


class ImmediateSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return ImmediateTransactionContext(ImmediateTransactionWrapper(self), self._lock)


client_class = ImmediateSqliteClient


def takes_write_lock(connection: object) -> bool:
    """True when `connection` is a transaction that began with the write lock."""
    return isinstance(connection, ImmediateTransactionWrapper)
