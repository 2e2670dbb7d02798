"""SQLite reads run on the event loop's thread, without the hop to aiosqlite's thread.

Every statement Tortoise runs on SQLite goes to aiosqlite's thread and back: for a
one-row read by primary key that hop costs ~100 µs of CPU, against ~7 µs for the same
read with `sqlite3` in the calling thread. The per-request reads of
`backend.models.lean_reads` are such reads, on every request and answer; on this
connection they cost 0.3-0.7x the CPU (bench/bench_loop_reads.py).

SQLite runs in WAL mode (Tortoise's default, kept by `backend.database`), where readers
never wait for writers: a read-only connection owned by the loop's thread can run these
small indexed reads synchronously and see every committed write at once (a commit through
aiosqlite has returned before the coroutine that awaited it goes on). It has no busy
timeout, so the loop never sleeps in SQLite's busy handler: when the read fails for any
reason (a lock held by a connection in exclusive mode, a schema not yet migrated, a file
not yet made) the caller falls back to Tortoise's own connection for that call, and the
next call opens a new read connection.

The connection follows the current Tortoise client: it is used only for a plain SQLite
client on a WAL file (not `:memory:`), never for a transaction's client (a read inside a
transaction must see that transaction's own writes, so it keeps the transaction's
connection), and it is reopened when the client or the client's own connection changes
(tests swap databases or make one anew at the same path), in
another process (after a fork) and per thread (only the thread that opened it uses it:
one loop's thread in a process that serves). PostgreSQL's client (asyncpg, no thread)
never comes here. The same bookkeeping keeps each thread's write connection
(`backend.models.loop_writes`: an answer's writes on the loop's thread).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteClient


class LoopConnection:
    """A connection of one thread for one Tortoise client's connection (None: not for
    it), with the writes it was asked for (`backend.models.loop_writes`). A client that
    reconnects may find another file at its path (a test that made the database anew):
    the connection is opened anew with it."""

    __slots__ = ("client", "connection", "opened_with", "writes")

    def __init__(self, client: SqliteClient, connection: sqlite3.Connection | None):
        self.client = client
        self.opened_with = client._connection
        self.connection = connection
        self.writes = 0


# A thread's connections by role: "reader" (here) and "writer" (loop_writes).
ROLES = ("reader", "writer")
local = threading.local()
# Connections a forked child inherited: never used nor closed there (SQLite forbids using
# a connection across fork, and closing one could touch the parent's WAL files).
inherited: list[LoopConnection] = []


def forget_after_fork() -> None:
    for role in ROLES:
        held = getattr(local, role, None)
        if held is not None:
            inherited.append(held)
            setattr(local, role, None)


os.register_at_fork(after_in_child=forget_after_fork)


def served_here(client: BaseDBAsyncClient) -> bool:
    """Tortoise's own SQLite client, not a transaction's (a statement inside a transaction
    must see, and be part of, that transaction: it keeps the transaction's connection)."""
    return isinstance(client, SqliteClient) and not isinstance(client, TransactionalDBClient)


def readable_here(client: SqliteClient) -> bool:
    """A SQLite file in WAL mode, the only kind whose readers never wait for its writer."""
    name = client.filename
    journal = str(client.pragmas.get("journal_mode", "WAL")).upper()
    return bool(name) and name != ":memory:" and not name.startswith("file:") and journal == "WAL"


def open_reader(client: SqliteClient) -> sqlite3.Connection:
    # Read-only: it never writes, never checkpoints, never makes the file; no busy
    # timeout: a lock makes the read fail at once (and fall back) instead of sleeping.
    uri = f"file:{quote(os.path.abspath(client.filename))}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None)
    # As Tortoise's connection: rows become dicts of the same values for `_init_from_db`.
    connection.row_factory = sqlite3.Row
    return connection


def held_for(
    client: SqliteClient, role: str, opener: Callable[[SqliteClient], sqlite3.Connection]
) -> LoopConnection:
    """This thread's `role` connection for `client`, opened by `opener` when there is none
    for the client's current connection (its `connection` is None where not WAL)."""
    held: LoopConnection | None = getattr(local, role, None)
    if held is not None and held.client is client and held.opened_with is client._connection:
        return held
    close(role)
    held = LoopConnection(client, opener(client) if readable_here(client) else None)
    setattr(local, role, held)
    return held


def rows(client: BaseDBAsyncClient, sql: str, values: list[Any]) -> list[dict] | None:
    """The rows of the read `sql` on this thread's read connection, or None when the
    caller must run it on `client` (PostgreSQL, a transaction, no WAL file, any error)."""
    if not served_here(client):
        return None
    try:
        connection = held_for(client, "reader", open_reader).connection
        if connection is None:
            return None
        # fetchall steps the statement to its end, which ends its read transaction: no
        # snapshot is held between calls (it would keep checkpoints from the WAL's end).
        return list(map(dict, connection.execute(sql, values).fetchall()))
    except sqlite3.Error:
        close("reader")
        return None


def close(*roles: str) -> None:
    """Close this thread's connections (all roles unless named), as
    `backend.database.close_database` does before closing Tortoise's own, so that one is
    the file's last and cleans up the WAL as it closes."""
    for role in roles or ROLES:
        held: LoopConnection | None = getattr(local, role, None)
        setattr(local, role, None)
        if held is not None and held.connection is not None:
            held.connection.close()
