"""On SQLite the per-request reads (backend/models/lean_reads.py) run on the event loop's own
read-only connection (backend/models/loop_reads.py): the same rows as the ORM, every
committed write seen at once, a transaction's reads on the transaction's connection, a
locked database answered through Tortoise's connection instead, the connection following
the database Tortoise answers from; PostgreSQL keeps its client."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.transactions import in_transaction

from backend.models import Assistant, ChatSession, Message, Task, User, loop_reads, loop_writes
from backend.models.chats import Role
from backend.models.lean_reads import (
    connection,
    history_page,
    owned_session,
    owned_task,
    user_by_id,
    user_by_id_sql,
)
from tests.support.accounts import create_account
from tests.support.stack_database import copy_sqlite, stack_database, template_of

SQLITE = os.environ.get("TEST_DATABASE", "sqlite") != "postgres"
sqlite_only = pytest.mark.sqlite_only


def fields_of(instance) -> dict:
    return {name: getattr(instance, name) for name in instance._meta.fields_db_projection}


@contextmanager
def no_aiosqlite_reads() -> Iterator[None]:
    """Any read through Tortoise's SQLite client (aiosqlite's thread) fails the test."""
    failing = mock.AsyncMock(side_effect=AssertionError("read through aiosqlite"))
    with mock.patch.object(SqliteClient, "execute_query_dict", failing):
        yield


@sqlite_only
async def test_reads_run_on_the_loop_with_the_orm_values(client, settings) -> None:
    owner = await create_account(settings, password=False)
    assistant = await Assistant.create(
        owner_id=owner.id, name="a", llm={"model_name": "m"}, dataset_ids=["d"]
    )
    session = await ChatSession.create(assistant_id=assistant.id, user_id=owner.id, name="n")
    await Message.create(session_id=session.id, role=Role.USER, content=[{"text": "é"}])
    task = await Task.create(user_id=owner.id, model="m", request={"messages": []})
    user, orm_session, orm_task = (
        await User.get(id=owner.id),
        await ChatSession.get(id=session.id).select_related("assistant"),
        await Task.get(id=task.id),
    )
    with no_aiosqlite_reads():
        lean_user = await user_by_id(owner.id)
        lean_session = await owned_session(session.id, owner.id)
        lean_task = await owned_task(task.id, owner.id)
        page = await history_page(session.id, 10, 0)
    assert fields_of(lean_user) == fields_of(user)
    assert fields_of(lean_session) == fields_of(orm_session)
    assert fields_of(lean_session.assistant) == fields_of(orm_session.assistant)
    assert fields_of(lean_task) == fields_of(orm_task)
    assert page == [("user", [{"text": "é"}])]


async def test_a_read_in_a_transaction_sees_its_own_write(client, settings) -> None:
    owner = await create_account(settings, password=False)
    await user_by_id(owner.id)  # the loop's connection is open, if there is one
    async with in_transaction():
        await User.filter(id=owner.id).update(nickname="uncommitted")
        assert (await user_by_id(owner.id)).nickname == "uncommitted"
        assert loop_reads.rows(connection(User), user_by_id_sql("sqlite"), [owner.id]) is None
    assert (await user_by_id(owner.id)).nickname == "uncommitted"


@sqlite_only
async def test_a_committed_write_is_seen_by_the_next_read(client, settings) -> None:
    owner = await create_account(settings, password=False)
    with no_aiosqlite_reads():
        assert (await user_by_id(owner.id)).nickname != "later"
    await User.filter(id=owner.id).update(nickname="later")
    with no_aiosqlite_reads():
        assert (await user_by_id(owner.id)).nickname == "later"
    async with in_transaction():
        await User.filter(id=owner.id).update(nickname="in a transaction")
    with no_aiosqlite_reads():
        assert (await user_by_id(owner.id)).nickname == "in a transaction"


async def test_postgres_keeps_its_client(client, settings) -> None:
    owner = await create_account(settings, password=False)
    db = connection(User)
    here = loop_reads.rows(db, user_by_id_sql(db.capabilities.dialect), [owner.id])
    if SQLITE:
        assert [row["id"] for row in here] == [owner.id]
    else:
        assert here is None
        assert (await user_by_id(owner.id)).id == owner.id


@sqlite_only
async def test_reads_follow_the_database_tortoise_answers_from(
    client, settings, tmp_path: Path
) -> None:
    shared = await create_account(settings, password=False)
    with no_aiosqlite_reads():
        assert (await user_by_id(shared.id)).username == shared.username
    async with stack_database(settings, tmp_path):
        own = await User.create(username="only-in-the-stack-database")
        with no_aiosqlite_reads():
            assert (await user_by_id(own.id)).username == own.username
            found = await user_by_id(shared.id)
            assert found is None or found.username != shared.username
    with no_aiosqlite_reads():
        assert (await user_by_id(shared.id)).username == shared.username


@sqlite_only
async def test_a_locked_database_falls_back_without_blocking_the_loop(
    client, settings, tmp_path: Path
) -> None:
    async with stack_database(settings, tmp_path) as own:
        user = await User.create(username="behind-a-lock")
        assert (await user_by_id(user.id)).id == user.id
        # Every connection closed, one in exclusive locking mode takes the file: any
        # other connection's read finds it locked (WAL readers wait for nothing else).
        loop_reads.close()
        await connection(User).close()
        blocker = sqlite3.connect(own.database_url.removeprefix("sqlite://"))
        blocker.execute("PRAGMA locking_mode=EXCLUSIVE")
        blocker.execute("BEGIN IMMEDIATE")
        table = User._meta.db_table
        blocker.execute(f"UPDATE \"{table}\" SET nickname='locked' WHERE id=?", [user.id])
        blocker.commit()
        started = time.monotonic()
        read = asyncio.create_task(user_by_id(user.id))
        await asyncio.sleep(0.1)
        # The loop ran on at once (its connection has no busy timeout) and the read
        # waits in aiosqlite's thread (Tortoise's busy timeout) rather than failing.
        assert time.monotonic() - started < 2
        assert not read.done()
        blocker.close()
        assert (await read).nickname == "locked"
        with no_aiosqlite_reads():
            assert (await user_by_id(user.id)).nickname == "locked"


@sqlite_only
async def test_a_database_made_anew_at_its_path_is_read_anew(
    client, settings, tmp_path: Path
) -> None:
    """Tortoise's client reconnects to whatever file is at its path: so does the loop's."""
    async with stack_database(settings, tmp_path) as own:
        gone = await User.create(username="in-the-first-file")
        with no_aiosqlite_reads():
            assert (await user_by_id(gone.id)).username == gone.username
        await connection(User).close()
        path = Path(own.database_url.removeprefix("sqlite://"))
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        copy_sqlite(await template_of(settings), own.database_url)
        with no_aiosqlite_reads():
            assert await user_by_id(gone.id) is None
        assert await User.filter(id=gone.id).exists() is False
        with no_aiosqlite_reads():
            assert await user_by_id(gone.id) is None


@sqlite_only
async def test_a_forked_child_leaves_the_parents_connection_alone(client, settings) -> None:
    """SQLite forbids using a connection across fork: the child opens its own (read and
    write connections alike, backend/models/loop_writes.py keeping its own here)."""
    owner = await create_account(settings, password=False)
    with no_aiosqlite_reads():
        await user_by_id(owner.id)
    loop_reads.held_for(connection(User), "writer", loop_writes.open_writer)
    parents = [loop_reads.local.reader.connection, loop_reads.local.writer.connection]
    pid = os.fork()
    if pid == 0:  # the child: checks and leaves at once, running nothing else
        kept = [held.connection for held in loop_reads.inherited]
        forgotten = all(getattr(loop_reads.local, role, None) is None for role in loop_reads.ROLES)
        os._exit(0 if forgotten and all(held in kept for held in parents) else 1)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [loop_reads.local.reader.connection, loop_reads.local.writer.connection] == parents
    with no_aiosqlite_reads():
        assert (await user_by_id(owner.id)).id == owner.id
