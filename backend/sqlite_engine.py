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

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.exceptions import TransactionManagementError


class ImmediateTransactionWrapper(SqliteTransactionWrapper):
    """A transaction that holds SQLite's write lock from its first statement on."""

    async def begin(self) -> None:
        try:
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class ImmediateSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return SqliteTransactionContext(ImmediateTransactionWrapper(self), self._lock)


client_class = ImmediateSqliteClient


def takes_write_lock(connection: object) -> bool:
    """True when `connection` is a transaction that began with the write lock."""
    return isinstance(connection, ImmediateTransactionWrapper)
