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
never comes here.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any
from urllib.parse import quote

from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteClient


class LoopReader:
    """The read connection of one thread for one Tortoise client's connection (None: not
    for it). A client that reconnects may find another file at its path (a test that
    made the database anew): the reader is opened anew with it."""

    __slots__ = ("client", "connection", "opened_with")

    def __init__(self, client: SqliteClient, connection: sqlite3.Connection | None):
        self.client = client
        self.opened_with = client._connection
        self.connection = connection


local = threading.local()
# Connections a forked child inherited: never used nor closed there (SQLite forbids using
# a connection across fork, and closing one could touch the parent's WAL files).
inherited: list[LoopReader] = []


def forget_after_fork() -> None:
    reader = getattr(local, "reader", None)
    if reader is not None:
        inherited.append(reader)
        local.reader = None


os.register_at_fork(after_in_child=forget_after_fork)


def readable_here(client: SqliteClient) -> bool:
    """A SQLite file in WAL mode, the only kind whose readers never wait for its writer."""
    name = client.filename
    journal = str(client.pragmas.get("journal_mode", "WAL")).upper()
    return bool(name) and name != ":memory:" and not name.startswith("file:") and journal == "WAL"


def open_reader(client: SqliteClient) -> LoopReader:
    if not readable_here(client):
        return LoopReader(client, None)
    # Read-only: it never writes, never checkpoints, never makes the file; no busy
    # timeout: a lock makes the read fail at once (and fall back) instead of sleeping.
    uri = f"file:{quote(os.path.abspath(client.filename))}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None)
    # As Tortoise's connection: rows become dicts of the same values for `_init_from_db`.
    connection.row_factory = sqlite3.Row
    return LoopReader(client, connection)


def reader_for(client: SqliteClient) -> LoopReader:
    reader: LoopReader | None = getattr(local, "reader", None)
    if reader is not None and reader.client is client and reader.opened_with is client._connection:
        return reader
    close()
    reader = local.reader = open_reader(client)
    return reader


def rows(client: BaseDBAsyncClient, sql: str, values: list[Any]) -> list[dict] | None:
    """The rows of the read `sql` on this thread's read connection, or None when the
    caller must run it on `client` (PostgreSQL, a transaction, no WAL file, any error)."""
    if not isinstance(client, SqliteClient) or isinstance(client, TransactionalDBClient):
        return None
    try:
        connection = reader_for(client).connection
        if connection is None:
            return None
        # fetchall steps the statement to its end, which ends its read transaction: no
        # snapshot is held between calls (it would keep checkpoints from the WAL's end).
        return list(map(dict, connection.execute(sql, values).fetchall()))
    except sqlite3.Error:
        close()
        return None


def close() -> None:
    """Close this thread's read connection (`backend.database.close_database`): before
    Tortoise's own, so that one is the file's last and cleans up the WAL as it closes."""
    reader: LoopReader | None = getattr(local, "reader", None)
    local.reader = None
    if reader is not None and reader.connection is not None:
        reader.connection.close()
