"""On SQLite an answer's three writes (the web's creation, the worker's claim and settle)
run on the event loop's own connection (backend/models/loop_writes.py): without a hop to
aiosqlite's thread, through Tortoise's connection instead when another connection holds
the write lock (nothing lost, nothing doubled, the loop never waiting), all or nothing
on an error, a caller's transaction keeping its connection, the WAL bounded though these
commits never checkpoint; PostgreSQL keeps its client. That the rows equal the ORM's is
tests/test_answer_writes.py's and tests/test_task_claim.py's, on both paths."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.transactions import in_transaction

from backend.models import CreditReservation, Message, Task, loop_reads, loop_writes
from backend.models.answer_writes import record, settle
from backend.models.task_claim import claim_queued
from backend.models.tasks import TaskState
from tests.support.accounts import Account, create_account
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.stack_database import stack_database
from tests.test_answer_writes import a_session, a_task, an_ending

sqlite_only = pytest.mark.sqlite_only


@pytest.fixture
async def member(client: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Account:
    # Every write here is the loop's (none takes its turn through Tortoise's connection).
    monkeypatch.setattr(loop_writes, "CHECKPOINT_EVERY", 10**9)
    return await create_account(settings, password=False, credits=1000)


@contextmanager
def no_aiosqlite_hops() -> Iterator[None]:
    """Any statement through Tortoise's SQLite connection (aiosqlite's thread) fails."""

    async def hop(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a hop to aiosqlite's thread")

    with pytest.MonkeyPatch.context() as patches:
        patches.setattr(aiosqlite.Connection, "_execute", hop)
        yield


@sqlite_only
async def test_an_answers_writes_run_on_the_loop(member: Account) -> None:
    new = a_task(member, await a_session(member), 30)
    with no_aiosqlite_hops():
        assert await record(new) is not None
        claimed = await claim_queued(new.task_id)
        assert claimed is not None
    # The claim's row, typed as Tortoise loads the row it wrote.
    loaded = await Task.get(id=new.task_id)
    for name in Task._meta.fields_db_projection:
        assert getattr(claimed, name) == getattr(loaded, name), name
    assert (claimed.state, claimed.attempts, claimed.request) == (
        TaskState.RUNNING,
        1,
        new.request,
    )
    with no_aiosqlite_hops():
        assert await settle(an_ending(new, 10, text="hi", state=TaskState.SUCCEEDED))
    stored = await Task.get(id=new.task_id)
    assert (stored.state, stored.cost) == (TaskState.SUCCEEDED, 10)
    assert await balance_of(member.id) == 990
    await assert_ledger_balanced()


async def until_waiting_in_aiosqlite(write: Awaitable[Any]) -> asyncio.Task:
    """`write` started, once it waits for the lock in aiosqlite's thread (holding
    Tortoise's connection): the loop ran on at once rather than waiting itself."""
    started = time.monotonic()
    running = asyncio.ensure_future(write)
    lock = Task._meta.db._lock
    for _ in range(100_000):
        if lock.locked() or running.done():
            break
        await asyncio.sleep(0)
    assert time.monotonic() - started < 2
    return running


@sqlite_only
async def test_a_held_write_lock_sends_the_writes_through_tortoise(member: Account) -> None:
    """Another connection in a write transaction: each write goes through Tortoise's
    connection, which waits for the lock, and lands once, when the lock is released."""
    new = a_task(member, await a_session(member), 30)
    blocker = sqlite3.connect(Task._meta.db.filename, isolation_level=None)
    steps = [
        lambda: record(new),
        lambda: claim_queued(new.task_id),
        lambda: settle(an_ending(new, 10, text="hi", state=TaskState.SUCCEEDED)),
    ]
    try:
        for step in steps:
            blocker.execute("BEGIN IMMEDIATE")
            waiting = await until_waiting_in_aiosqlite(step())
            assert not waiting.done()
            blocker.execute("COMMIT")
            assert await waiting
    finally:
        blocker.close()
    stored = await Task.get(id=new.task_id)
    assert (stored.state, stored.attempts, stored.cost) == (TaskState.SUCCEEDED, 1, 10)
    assert await CreditReservation.filter(task_id=new.task_id).count() == 1
    assert await Message.filter(task_id=new.task_id).count() == 2  # question, answer
    assert await balance_of(member.id) == 990
    await assert_ledger_balanced()
    with no_aiosqlite_hops():  # and the loop's connection serves the next answer
        assert await record(a_task(member, new.session_id, 5)) is not None


async def test_an_error_mid_transaction_writes_nothing(member: Account) -> None:
    """The user's message clashes after the hold was debited: all of it rolled back,
    raised as Tortoise raises it, and the next write goes on (on the loop's connection)."""
    session_id = await a_session(member)
    first = a_task(member, session_id, 10)
    assert await record(first) is not None
    clash = replace(a_task(member, session_id, 40), message_id=first.message_id)
    with pytest.raises(IntegrityError):
        await record(clash)
    assert not await Task.exists(id=clash.task_id)
    assert not await CreditReservation.exists(task_id=clash.task_id)
    assert await balance_of(member.id) == 990
    sqlite = Task._meta.db.capabilities.dialect == "sqlite"
    with no_aiosqlite_hops() if sqlite else nullcontext():
        assert await record(a_task(member, session_id, 40)) is not None
    assert await balance_of(member.id) == 950
    await assert_ledger_balanced()


async def test_a_missing_session_is_refused_as_tortoises_connection_refuses_it(
    member: Account,
) -> None:
    """The loop's connection enforces foreign keys as Tortoise's does (its pragmas)."""
    orphan = a_task(member, "no-such-session", 10)
    with pytest.raises(IntegrityError):
        await record(orphan)
    assert not await Task.exists(id=orphan.task_id)
    assert await balance_of(member.id) == 1000


def debit_then_fail(error: sqlite3.Error):
    def work(connection: sqlite3.Connection, values: dict[str, Any]) -> bool:
        connection.execute('UPDATE "users" SET "credits"=0 WHERE "id"=:user_id', values)
        raise error

    return work


@sqlite_only
async def test_an_error_after_begin_leaves_nothing_written(member: Account) -> None:
    """Busy after BEGIN: rolled back, the caller told to go through Tortoise's connection
    (running it again doubles nothing); any other error: rolled back and raised, the
    connection replaced by a new one."""
    db, values = Task._meta.db, {"user_id": member.id}
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
    assert loop_writes.run(db, debit_then_fail(busy), values) is None
    assert await balance_of(member.id) == 1000
    used = loop_reads.local.writer.connection
    with pytest.raises(OperationalError):
        loop_writes.run(db, debit_then_fail(sqlite3.OperationalError("disk I/O error")), values)
    assert await balance_of(member.id) == 1000
    assert loop_reads.local.writer is None
    with no_aiosqlite_hops():
        assert await record(a_task(member, None, 10)) is not None
    assert loop_reads.local.writer.connection is not used
    assert await balance_of(member.id) == 990


async def test_a_transaction_keeps_its_connection(member: Account) -> None:
    """Inside a caller's transaction the writes are that transaction's, and go with it."""
    new = a_task(member, await a_session(member), 25)

    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack):
        async with in_transaction():
            assert loop_writes.writer(Task._meta.db) is None
            assert await record(new) is not None
            assert await Task.exists(id=new.task_id)
            raise RolledBack
    assert not await Task.exists(id=new.task_id)
    assert await balance_of(member.id) == 1000


async def test_postgres_keeps_its_client(member: Account) -> None:
    db = Task._meta.db
    if db.capabilities.dialect == "sqlite":
        assert loop_writes.writer(db) is not None
    else:
        assert loop_writes.writer(db) is None
        assert loop_writes.rows(db, "SELECT 1", []) is None
    new = a_task(member, None, 5)
    assert await record(new) is not None and await claim_queued(new.task_id) is not None


def wal_pages(database: str) -> int:
    wal = Path(database + "-wal")
    return wal.stat().st_size // 4096 if wal.exists() else 0


@sqlite_only
async def test_the_wal_stays_bounded(client: Any, settings: Any, tmp_path: Path) -> None:
    """The loop's commits never checkpoint: every CHECKPOINT_EVERY-th write goes through
    Tortoise's connection, whose commit checkpoints once the WAL holds 1,000 pages (each
    answer adds about twenty, so without it 1,000 answers leave some 21,000)."""
    async with stack_database(settings, tmp_path) as own:
        user = await create_account(own, password=False, credits=10**9)
        session_id = await a_session(user)
        database = own.database_url.removeprefix("sqlite://").split("?")[0]
        for _ in range(1000):
            new = a_task(user, session_id, 3)
            assert await record(new) is not None
            assert await claim_queued(new.task_id) is not None
            assert await settle(an_ending(new, 1, text="ok", state=TaskState.SUCCEEDED))
        assert wal_pages(database) < 3000
