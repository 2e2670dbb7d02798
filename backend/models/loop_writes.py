"""An answer's SQLite writes run on the event loop's thread, without the hop to aiosqlite's.

Each answer writes three times on its way: the web's creation transaction, the worker's
claim (an UPDATE … RETURNING, before the provider is asked anything) and the worker's
settle. Through Tortoise's client each is a hop to aiosqlite's thread and back, ~100 µs
of CPU besides the statements (bench/bench_loop_writes.py). Here they run synchronously
on a writable connection owned by the loop's thread, kept as the read connection is
(`backend.models.loop_reads`: per thread and process, reopened with Tortoise's client,
only for a WAL file, never inside a caller's transaction).

It has no busy timeout, so the loop never sleeps in SQLite's busy handler: when another
connection holds the write lock (another process, or a transaction of this process on
Tortoise's connection, which takes the lock as it begins: `backend.sqlite_engine`), the
write fails at once with nothing written and the caller takes Tortoise's connection,
which waits for the lock in aiosqlite's thread as before. Any other error is the
caller's, as through Tortoise. Only the service's engine, whose transactions all begin
with the write lock, gets this connection: a deferred transaction that had read before a
write committed here would fail on its own first write.

A commit here never checkpoints (`wal_autocheckpoint=0`: a checkpoint fsyncs, which would
stall the loop); Tortoise's connection still does, at its commits once the WAL holds its
1,000 pages. So that one commits now and then even when every write of a process would
fit here, every `CHECKPOINT_EVERY`-th write goes through it: the WAL stays bounded
(tests/test_loop_writes.py counts its pages after 2,000 answers).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.exceptions import IntegrityError, OperationalError

from backend.models.loop_reads import LoopConnection, close, held_for, served_here
from backend.sqlite_engine import ImmediateSqliteClient

T = TypeVar("T")
Work = Callable[[sqlite3.Connection, dict[str, Any]], bool]
# One write in this many through Tortoise's connection, whose commits checkpoint: at a
# few pages a write the WAL reaches SQLite's 1,000-page mark between two of them at most
# a few hundred pages late.
CHECKPOINT_EVERY = 64
# Pragmas of Tortoise's connection that are not this one's: a busy timeout would sleep on
# the loop; the journal mode is the file's (WAL, or this connection is not opened).
NOT_HERE = {"busy_timeout", "journal_mode"}
BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def open_writer(client: SqliteClient) -> sqlite3.Connection:
    connection = sqlite3.connect(client.filename, timeout=0, isolation_level=None)
    for pragma, value in client.pragmas.items():  # synchronous, foreign_keys, size limit
        if pragma not in NOT_HERE:
            connection.execute(f"PRAGMA {pragma}={value}")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    # As Tortoise's connection: rows become dicts of the same values for `_init_from_db`.
    connection.row_factory = sqlite3.Row
    return connection


def writer(client: BaseDBAsyncClient) -> LoopConnection | None:
    """This thread's write connection for `client`, or None when the write must go
    through `client` (PostgreSQL, a transaction, not the service's engine, not a WAL
    file, or its turn to let Tortoise's connection checkpoint)."""
    if not served_here(client) or not isinstance(client, ImmediateSqliteClient):
        return None
    held = held_for(client, "writer", open_writer)
    if held.connection is None:
        return None
    held.writes += 1
    return None if held.writes % CHECKPOINT_EVERY == 0 else held


def busy(error: sqlite3.Error, connection: sqlite3.Connection) -> bool:
    """Another connection holds the lock and nothing of this write is left: SQLite rolls a
    busy statement back, and `transaction` a busy transaction (a COMMIT that finds the
    database busy keeps its transaction open, so that one is rolled back too)."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    return code in BUSY and not connection.in_transaction


def transaction(connection: sqlite3.Connection, work: Work, values: dict[str, Any]) -> bool:
    """BEGIN IMMEDIATE (the write lock first, as the service's transactions take it),
    `work`, then COMMIT, or ROLLBACK when it raised or wrote nothing (returned False)."""
    own = not connection.in_transaction
    if own:
        connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(connection, values)
        if own:
            connection.execute("COMMIT" if result else "ROLLBACK")
        return result
    except BaseException:
        if own and connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def run(client: BaseDBAsyncClient, work: Work, values: dict[str, Any]) -> bool | None:
    """`work` as one transaction on this thread's write connection: its result, or None
    when nothing was written and the caller must run it through `client`."""
    held = writer(client)
    if held is None:
        return None
    return attempt(held, lambda connection: transaction(connection, work, values))


def rows(client: BaseDBAsyncClient, sql: str, values: list[Any]) -> list[dict] | None:
    """The rows of the one writing statement `sql` (autocommit), or None when nothing was
    written and the caller must run it through `client`."""
    held = writer(client)
    if held is None:
        return None
    client.log.debug("%s: %s", sql, values)  # Tortoise's query log, as its client logs it
    # fetchall steps the statement to its end, where its autocommit commits.
    return attempt(
        held, lambda connection: list(map(dict, connection.execute(sql, values).fetchall()))
    )


def attempt(held: LoopConnection, write: Callable[[sqlite3.Connection], T]) -> T | None:
    connection = held.connection
    assert connection is not None
    try:
        return write(connection)
    except sqlite3.IntegrityError as error:  # as Tortoise raises it: callers handle it
        raise IntegrityError(error) from error
    except sqlite3.Error as error:
        if busy(error, connection):
            return None
        # Anything else may have left the connection unusable: the next write opens
        # another (closing this one rolls back whatever it still held).
        close("writer")
        if isinstance(error, sqlite3.OperationalError):
            raise OperationalError(error) from error
        raise
