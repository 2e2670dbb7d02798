"""An answer's two SQL transactions, each in one trip to the database.

Every answer writes twice: the web records it (the credit hold, the user's message, the
task) and the worker settles it (the task's transition, the reservation closed with its
refund, the assistant message). Through the ORM each statement was a query built by
pypika and, on SQLite, a hop to aiosqlite's thread and back (on PostgreSQL a round
trip), plus BEGIN and COMMIT: seven hops a transaction. bench/bench_answer_paths.py
measured the creation at 1.2 ms of CPU (SQLite; PostgreSQL 1.6) and the settle at 2.1
ms (2.3), against 0.35 (0.36) and 0.36 (0.30) here. They are the hot path of every
answer, so here they are raw SQL, written once (`backend.models.answer_sql`):

- SQLite: one function does BEGIN IMMEDIATE, the statements and COMMIT (ROLLBACK on any
  error), on the loop's own connection (`backend.models.loop_writes`, 0.6x the CPU) or,
  when another connection holds the write lock, in aiosqlite's thread, holding the
  Tortoise client's lock as its own queries do, so no other coroutine's statement runs
  on the one connection in between;
- PostgreSQL: one statement whose data-modifying CTEs do every write, atomic on its own,
  so no BEGIN or COMMIT round trip either.

Values are stored as Tortoise stores them: its JSON encoder, the enums' values, aware
datetimes (on SQLite through the adapter Tortoise registers), the models' defaults;
tests/test_answer_writes.py reads rows made here back through the models next to rows
made by the ORM, on both databases. Anything unusual is left to the ORM: `settle`
writes nothing and says so when the task was not in the expected state (another ender
won) or its reservation is not held for at least the cost.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from tortoise import timezone
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.fields.data import JSON_DUMPS

from backend.models import answer_sql as sql
from backend.models import loop_writes
from backend.models.chats import Role
from backend.models.tasks import Task, TaskState


@dataclass(frozen=True)
class NewTask:
    """A task to record with its hold (0 for a free model) and, in a session, the
    user's message (`message_id`, `content`)."""

    task_id: str
    user_id: int
    session_id: str | None
    model: str
    request: dict[str, Any]
    hold: int
    reservation_id: str
    message_id: str | None
    content: list[dict[str, Any]] | None


@dataclass(frozen=True)
class Settlement:
    """A task's ending with an answer: its transition and charge, and the assistant
    message when `message_id` is set."""

    task_id: str
    state: TaskState
    expected: TaskState
    reservation_id: str | None
    cost: int
    prompt_tokens: int
    completion_tokens: int
    message_id: str | None
    session_id: str | None
    content: list[dict[str, Any]]
    reference: dict[str, Any] | None


async def record(new: NewTask) -> Task | None:
    """Hold, user message and task in one transaction: the task as `Task.create` returns
    it, or None when the balance cannot cover the hold (then nothing is written)."""
    now = timezone.localtime()  # what Tortoise gives `auto_now_add` fields
    content = JSON_DUMPS(new.content) if new.message_id else None
    values = {**vars(new), "request": JSON_DUMPS(new.request), "content": content, "now": now}
    # SQLite's message INSERT serves both messages: the user's has the models' defaults.
    values |= {"role": Role.USER.value, "reference": None}
    values |= {"prompt_tokens": 0, "completion_tokens": 0}
    if not await in_one_trip(record_in_thread, sql.PG_RECORD_NUMBERED, values):
        return None
    task = Task(
        id=new.task_id,
        user_id=new.user_id,
        session_id=new.session_id,
        model=new.model,
        request=new.request,
        reservation_id=new.reservation_id,
        user_message_id=new.message_id,
    )
    task.created_at, task._saved_in_db = now, True
    return task


def record_in_thread(connection: sqlite3.Connection, values: dict[str, Any]) -> bool:
    if values["hold"]:
        debited = connection.execute(sql.SQLITE_DEBIT, values).fetchone()
        if debited is None:
            return False
        entry = (-values["hold"], sql.RESERVE, debited[0], values["task_id"], values["now"])
        connection.execute(sql.SQLITE_ENTRY, (*entry, values["user_id"]))
    connection.execute(sql.SQLITE_RESERVATION, values)
    if values["message_id"] is not None:
        connection.execute(sql.SQLITE_MESSAGE, values)
    connection.execute(sql.SQLITE_TASK, values)
    return True


async def settle(ending: Settlement) -> bool:
    """The transition, the reservation settled at `cost` with the rest refunded, and the
    message, in one transaction; False, with nothing written, when the task was not
    `expected` or its reservation is not held for at least `cost` (the ORM decides)."""
    values = {
        **vars(ending),
        "state": ending.state.value,
        "expected": ending.expected.value,
        "content": JSON_DUMPS(ending.content) if ending.message_id else None,
        "reference": JSON_DUMPS(ending.reference) if ending.reference is not None else None,
        "role": Role.ASSISTANT.value,
        "now": timezone.now(),  # what the ORM's ending wrote
    }
    return await in_one_trip(settle_in_thread, sql.PG_SETTLE_NUMBERED, values)


def settle_in_thread(connection: sqlite3.Connection, values: dict[str, Any]) -> bool:
    if not connection.execute(sql.SQLITE_TRANSITION, values).rowcount:
        return False
    if values["reservation_id"] is not None:
        # Held for at least the cost: the transition checked it under the write lock.
        user_id, task_id, refund = connection.execute(sql.SQLITE_CLOSE, values).fetchone()
        if refund:
            balance = connection.execute(sql.SQLITE_REFUND, (refund, user_id)).fetchone()
            entry = (refund, sql.RELEASE, balance[0], task_id, values["now"], user_id)
            connection.execute(sql.SQLITE_ENTRY, entry)
    if values["message_id"] is not None:
        connection.execute(sql.SQLITE_MESSAGE, values)
    return True


async def in_one_trip(
    work: loop_writes.Work, numbered_sql: tuple[str, tuple[str, ...]], values: dict[str, Any]
) -> bool:
    """SQLite: `work` as one transaction, on the loop's own connection
    (`backend.models.loop_writes`) or else in aiosqlite's thread, holding the lock
    Tortoise takes for each query (inside a caller's transaction, its connection's);
    PostgreSQL: the one statement."""
    db = Task._meta.db
    if db.capabilities.dialect != "sqlite":
        text, names = numbered_sql
        return bool((await db.execute_query_dict(text, [values[n] for n in names]))[0]["done"])
    done = loop_writes.run(db, work, values)  # on the loop's thread when SQLite allows it
    if done is not None:
        return done
    async with db.acquire_connection() as connection:
        try:
            # aiosqlite's own way to run a function in its thread (its methods use it).
            return await connection._execute(
                loop_writes.transaction, connection._conn, work, values
            )
        except sqlite3.OperationalError as error:
            raise OperationalError(error) from error
        except sqlite3.IntegrityError as error:
            raise IntegrityError(error) from error
