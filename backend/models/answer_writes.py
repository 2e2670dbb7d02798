"""An answer's two SQL transactions, each in one trip to the database.

Every answer writes twice: the web records it (the credit hold, the user's message, the
task) and the worker settles it (the task's transition, the reservation closed with its
refund, the assistant message). Through the ORM each statement was a query built by
pypika and, on SQLite, a hop to aiosqlite's thread and back (on PostgreSQL a round
trip), plus BEGIN and COMMIT: up to seven hops a transaction, measured at 0.5-1 ms of
the web's CPU for the creation and 1-2.7 ms of the worker's for the settle
(bench/bench_answer_paths.py). They are the hot path of every answer, so here they are
raw SQL, written once as module constants:

- SQLite: one function run in aiosqlite's thread does BEGIN IMMEDIATE, the statements
  and COMMIT (ROLLBACK on any error), holding the Tortoise client's lock as its own
  queries do, so no other coroutine's statement runs on the one connection in between;
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

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tortoise import timezone
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.fields.data import JSON_DUMPS

from backend.models.chats import Role
from backend.models.credits import CreditReason, ReservationState
from backend.models.tasks import Task, TaskState

ENTRY = "credit_entries (delta, reason, balance_after, task_id, code, note, created_at, user_id)"
RESERVATION = (
    "credit_reservations (id, amount, charged, state, task_id, created_at, finished_at, user_id)"
)
MESSAGE = (
    "messages (id, role, content, reference, visible, prompt_tokens, completion_tokens, "
    "task_id, created_at, session_id)"
)
TASK = (
    "tasks (id, model, state, request, reservation_id, user_message_id, message_id, "
    "prompt_tokens, completion_tokens, cost, error_code, error_message, attempts, "
    "created_at, started_at, finished_at, session_id, user_id)"
)
RESERVED, SETTLED = ReservationState.RESERVED.value, ReservationState.SETTLED.value
RESERVE, RELEASE = CreditReason.RESERVE.value, CreditReason.RELEASE.value

SQLITE_DEBIT = (
    "UPDATE users SET credits = credits - :hold WHERE id = :user_id AND credits >= :hold "
    "RETURNING credits"
)
SQLITE_ENTRY = f"INSERT INTO {ENTRY} VALUES (?, ?, ?, ?, NULL, NULL, ?, ?)"
SQLITE_RESERVATION = (
    f"INSERT INTO {RESERVATION} VALUES (:reservation_id, :hold, NULL, '{RESERVED}', :task_id, "
    ":now, NULL, :user_id)"
)
SQLITE_MESSAGE = (
    f"INSERT INTO {MESSAGE} VALUES (:message_id, :role, :content, :reference, 1, "
    ":prompt_tokens, :completion_tokens, :task_id, :now, :session_id)"
)
SQLITE_TASK = (
    f"INSERT INTO {TASK} VALUES (:task_id, :model, '{TaskState.QUEUED.value}', :request, "
    ":reservation_id, :message_id, NULL, 0, 0, 0, NULL, NULL, 0, :now, NULL, NULL, "
    ":session_id, :user_id)"
)
# The transition only when the reservation (if any) is held for at least the cost.
SQLITE_TRANSITION = (
    "UPDATE tasks SET state = :state, finished_at = :now, prompt_tokens = :prompt_tokens, "
    "completion_tokens = :completion_tokens, cost = :cost, message_id = :message_id "
    "WHERE id = :task_id AND state = :expected AND (:reservation_id IS NULL OR EXISTS ("
    "SELECT 1 FROM credit_reservations WHERE id = :reservation_id "
    f"AND state = '{RESERVED}' AND amount >= :cost))"
)
SQLITE_CLOSE = (
    f"UPDATE credit_reservations SET state = '{SETTLED}', charged = :cost, finished_at = :now "
    f"WHERE id = :reservation_id AND state = '{RESERVED}' RETURNING user_id, task_id, "
    "amount - :cost"
)
SQLITE_REFUND = "UPDATE users SET credits = credits + ? WHERE id = ? RETURNING credits"

# `held` has a row when the hold is taken: a free model's (0) touches no balance, a
# priced one's only a balance that covers it.
PG_RECORD = f"""WITH debited AS (
    UPDATE users SET credits = credits - :hold::bigint
    WHERE id = :user_id::int AND credits >= :hold AND :hold > 0 RETURNING credits
), held AS (SELECT 1 WHERE :hold = 0 UNION ALL SELECT 1 FROM debited
), entry AS (INSERT INTO {ENTRY} SELECT -:hold, '{RESERVE}', credits, :task_id::varchar,
    NULL, NULL, :now::timestamptz, :user_id FROM debited
), reservation AS (INSERT INTO {RESERVATION} SELECT :reservation_id::varchar, :hold, NULL,
    '{RESERVED}', :task_id, :now, NULL, :user_id FROM held
), message AS (INSERT INTO {MESSAGE} SELECT :message_id::varchar, '{Role.USER.value}',
    :content::jsonb, NULL, TRUE, 0, 0, :task_id, :now, :session_id::varchar
    FROM held WHERE :message_id IS NOT NULL
), task AS (INSERT INTO {TASK} SELECT :task_id, :model::varchar, '{TaskState.QUEUED.value}',
    :request::jsonb, :reservation_id, :message_id, NULL, 0, 0, 0, NULL, NULL, 0, :now, NULL,
    NULL, :session_id, :user_id FROM held
) SELECT count(*) AS done FROM held"""
# Only the task's winning ender closes its reservation: one `moved` found held still is.
PG_SETTLE = f"""WITH moved AS (
    UPDATE tasks SET state = :state::varchar, finished_at = :now::timestamptz,
        prompt_tokens = :prompt_tokens::int, completion_tokens = :completion_tokens::int,
        cost = :cost::bigint, message_id = :message_id::varchar
    WHERE id = :task_id::varchar AND state = :expected::varchar AND (
        :reservation_id::varchar IS NULL OR EXISTS (SELECT 1 FROM credit_reservations
        WHERE id = :reservation_id AND state = '{RESERVED}' AND amount >= :cost))
    RETURNING id
), closed AS (
    UPDATE credit_reservations SET state = '{SETTLED}', charged = :cost, finished_at = :now
    WHERE id = :reservation_id AND state = '{RESERVED}' AND EXISTS (SELECT 1 FROM moved)
    RETURNING user_id, task_id, amount - :cost AS refund
), refunded AS (
    UPDATE users SET credits = users.credits + closed.refund FROM closed
    WHERE users.id = closed.user_id AND closed.refund > 0
    RETURNING users.id, users.credits, closed.refund, closed.task_id
), entry AS (INSERT INTO {ENTRY} SELECT refund, '{RELEASE}', credits, task_id, NULL, NULL,
    :now, id FROM refunded
), message AS (INSERT INTO {MESSAGE} SELECT :message_id, '{Role.ASSISTANT.value}',
    :content::jsonb, :reference::jsonb, TRUE, :prompt_tokens, :completion_tokens, :task_id,
    :now, :session_id::varchar FROM moved WHERE :message_id IS NOT NULL
) SELECT count(*) AS done FROM moved"""


def numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """asyncpg's `$n` for each `:name` (not `::type`), and the names in their order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return re.sub(r"(?<!:):(\w+)", number, sql), tuple(names)


PG_RECORD_NUMBERED, PG_SETTLE_NUMBERED = numbered(PG_RECORD), numbered(PG_SETTLE)

Work = Callable[[sqlite3.Connection, dict[str, Any]], bool]


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
    values |= {"role": Role.USER.value, "reference": None, "prompt_tokens": 0}
    if not await in_one_trip(
        record_in_thread, PG_RECORD_NUMBERED, values | {"completion_tokens": 0}
    ):
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
        debited = connection.execute(SQLITE_DEBIT, values).fetchone()
        if debited is None:
            return False
        entry = (-values["hold"], RESERVE, debited[0], values["task_id"], values["now"])
        connection.execute(SQLITE_ENTRY, (*entry, values["user_id"]))
    connection.execute(SQLITE_RESERVATION, values)
    if values["message_id"] is not None:
        connection.execute(SQLITE_MESSAGE, values)
    connection.execute(SQLITE_TASK, values)
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
    return await in_one_trip(settle_in_thread, PG_SETTLE_NUMBERED, values)


def settle_in_thread(connection: sqlite3.Connection, values: dict[str, Any]) -> bool:
    if not connection.execute(SQLITE_TRANSITION, values).rowcount:
        return False
    if values["reservation_id"] is not None:
        # Held for at least the cost: the transition checked it under the write lock.
        user_id, task_id, refund = connection.execute(SQLITE_CLOSE, values).fetchone()
        balance = (
            connection.execute(SQLITE_REFUND, (refund, user_id)).fetchone() if refund else None
        )
        if balance is not None:
            entry = (refund, RELEASE, balance[0], task_id, values["now"], user_id)
            connection.execute(SQLITE_ENTRY, entry)
    if values["message_id"] is not None:
        connection.execute(SQLITE_MESSAGE, values)
    return True


async def in_one_trip(
    work: Work, numbered_sql: tuple[str, tuple[str, ...]], values: dict[str, Any]
) -> bool:
    """SQLite: `work` in aiosqlite's thread as one transaction, holding the lock Tortoise
    takes for each query (inside a caller's transaction, its connection's); PostgreSQL:
    the one statement."""
    db = Task._meta.db
    if db.capabilities.dialect != "sqlite":
        sql, names = numbered_sql
        return bool((await db.execute_query_dict(sql, [values[n] for n in names]))[0]["done"])
    async with db.acquire_connection() as connection:
        try:
            # aiosqlite's own way to run a function in its thread (its methods use it).
            return await connection._execute(transaction, connection._conn, work, values)
        except sqlite3.OperationalError as error:
            raise OperationalError(error) from error
        except sqlite3.IntegrityError as error:
            raise IntegrityError(error) from error


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
