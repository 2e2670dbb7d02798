"""An answer's two transactions in one trip to the database each (issue 16,
`backend.models.answer_writes`), against the ORM path they replace.

Rows written by the raw SQL are read back through the models and as the database holds
them, next to rows the ORM wrote from the same input (tests/support/orm_answer_writes.py),
field by field: only ids and the instants differ, and the instants are stored in the
same form. A refused hold writes nothing; a settle that is not the usual case writes
nothing and leaves it to the ORM. On SQLite each test runs on the loop's own connection
and on aiosqlite's thread.
"""

from __future__ import annotations

import asyncio
import datetime
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import aiosqlite
import pytest
from quart.testing import QuartClient
from tortoise.models import Model
from tortoise.transactions import in_transaction

from backend.models import (
    Assistant,
    ChatSession,
    CreditEntry,
    CreditReservation,
    Message,
    Task,
    loop_writes,
)
from backend.models.answer_writes import NewTask, Settlement, record, settle
from backend.models.ids import new_id
from backend.models.tasks import TaskState
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.orm_answer_writes import orm_record, orm_settle
from tests.support.query_log import logged_statements

# How SQLite holds an instant Tortoise wrote (its sqlite3 adapter: isoformat(" ")).
SQLITE_INSTANT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?\+00:00$")
REFERENCE = {"chunks": [{"id": "c1", "content": "ß → ∑", "similarity": 0.5}], "doc_aggs": []}


@pytest.fixture(params=["loop", "aiosqlite"], autouse=True)
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on both of SQLite's paths: the loop's own connection
    (`backend.models.loop_writes`) and aiosqlite's thread, the path when the loop's
    finds the database locked (on PostgreSQL both are its one statement)."""
    if request.param == "aiosqlite":
        monkeypatch.setattr(loop_writes, "writer", lambda client: None)
    else:  # no write's turn to go through Tortoise's connection (its checkpoints)
        monkeypatch.setattr(loop_writes, "CHECKPOINT_EVERY", 10**9)
    return request.param


@pytest.fixture
async def member(client: QuartClient, settings: Settings) -> Account:
    """An account, with the app (and so the database) up."""
    return await create_account(settings, password=False, credits=1000)


async def a_session(member: Account) -> str:
    assistant = await Assistant.create(owner_id=member.id, name="writes", llm={})
    return (await ChatSession.create(assistant_id=assistant.id, user_id=member.id)).id


def a_task(member: Account, session_id: str | None, hold: int) -> NewTask:
    return NewTask(
        task_id=new_id(),
        user_id=member.id,
        session_id=session_id,
        model="cheap",
        request={"messages": [{"role": "user", "content": "Héllo"}], "params": {"top_p": 0.5}},
        hold=hold,
        reservation_id=new_id(),
        message_id=new_id() if session_id else None,
        content=[{"type": "text", "text": 'Héllo \u2028 ✓ "quoted"'}] if session_id else None,
    )


def fields_of(row: Model, ids: dict[str, str]) -> dict[str, Any]:
    """The instance's fields, its ids by role and its instants by kind (aware, UTC)."""
    seen: dict[str, Any] = {}
    for name in row._meta.fields_db_projection:
        value = getattr(row, name)
        if isinstance(value, datetime.datetime):
            value = ("instant", value.utcoffset(), type(value.tzinfo).__name__)
        seen[name] = ids.get(value, value) if isinstance(value, str | int) else value
    return seen


async def stored(
    model: type[Model], ids: dict[str, str], differ: tuple[str, ...] = (), **filters: Any
) -> list[Any]:
    """The rows as the models read them and as the database holds them, normalised
    (`differ`: fields that differ by design, left out)."""
    rows = await model.filter(**filters).order_by("id")
    table = model._meta.db_table
    keys = [row.pk for row in rows]
    db = model._meta.db
    marks = ",".join(
        "?" if db.capabilities.dialect == "sqlite" else f"${i + 1}" for i in range(len(keys))
    )
    raw = (
        await db.execute_query_dict(
            f"SELECT * FROM {table} WHERE id IN ({marks}) ORDER BY id", keys
        )
        if keys
        else []
    )
    held = []
    for values in raw:
        for column, value in values.items():
            if isinstance(value, str) and SQLITE_INSTANT.match(value):
                values[column] = "sqlite instant"
            elif isinstance(value, datetime.datetime):
                values[column] = ("instant", value.utcoffset())
        values.pop("id")
        held.append({k: ids.get(v, v) if isinstance(v, str) else v for k, v in values.items()})
    rows_read = [fields_of(row, ids) | {"id": None} for row in rows]
    kept = [{k: v for k, v in row.items() if k not in differ} for row in rows_read]
    # In an order that does not depend on the ids.
    return sorted(kept, key=repr) + sorted(
        ({k: v for k, v in row.items() if k not in differ} for row in held), key=repr
    )


async def everything_of(new: NewTask, extra_ids: dict[str, str] | None = None) -> list[Any]:
    ids = {new.task_id: "task", new.reservation_id: "reservation"}
    ids |= {new.message_id: "user message"} if new.message_id else {}
    ids |= extra_ids or {}
    return [
        await stored(Task, ids, id=new.task_id),
        await stored(Message, ids, task_id=new.task_id),
        await stored(CreditReservation, ids, task_id=new.task_id),
        # Each answer's balance is its own: the ledger's sums are checked apart.
        await stored(CreditEntry, ids, ("balance_after",), task_id=new.task_id),
    ]


@pytest.mark.parametrize("in_session, hold", [(True, 40), (False, 0), (True, 0), (False, 7)])
async def test_a_recorded_answer_is_stored_as_the_orm_stores_it(
    member: Account, in_session: bool, hold: int
) -> None:
    session_id = await a_session(member) if in_session else None
    old, new = a_task(member, session_id, hold), a_task(member, session_id, hold)
    made_by_orm = await orm_record(old)
    old = replace(old, reservation_id=made_by_orm.reservation_id)  # credits.hold's own id
    made_here = await record(new)
    assert made_here is not None
    assert fields_of(
        made_here, {new.task_id: "t", new.reservation_id: "r", new.message_id: "m"}
    ) == (fields_of(made_by_orm, {old.task_id: "t", old.reservation_id: "r", old.message_id: "m"}))
    read = await Task.get(id=new.task_id)
    for name in Task._meta.fields_db_projection:  # as `Task.create` returns it
        assert getattr(made_here, name) == getattr(read, name), name
    assert await everything_of(new) == await everything_of(old)
    assert any(await everything_of(new))
    assert await balance_of(member.id) == 1000 - 2 * hold
    await assert_ledger_balanced()


async def test_a_refused_hold_records_nothing(member: Account) -> None:
    new = a_task(member, await a_session(member), 1001)
    assert await record(new) is None
    assert await everything_of(new) == [[], [], [], []]
    assert await Message.filter(id=new.message_id).count() == 0
    assert await balance_of(member.id) == 1000
    covered = replace(new, hold=1000)
    assert await record(covered) is not None
    assert await balance_of(member.id) == 0
    await assert_ledger_balanced()


def an_ending(new: NewTask, cost: int, *, text: str, state: TaskState) -> Settlement:
    return Settlement(
        task_id=new.task_id,
        state=state,
        expected=TaskState.RUNNING,
        reservation_id=new.reservation_id,
        cost=cost,
        prompt_tokens=11,
        completion_tokens=5,
        message_id=new_id() if new.session_id and text else None,
        session_id=new.session_id,
        content=[{"type": "text", "text": text}],
        reference=REFERENCE if text else None,
    )


async def running(member: Account, session_id: str | None, hold: int) -> NewTask:
    new = a_task(member, session_id, hold)
    assert await record(new) is not None
    await Task.filter(id=new.task_id).update(state=TaskState.RUNNING)
    return new


@pytest.mark.parametrize(
    "in_session, hold, cost, text, state",
    [
        (True, 40, 15, "An answer ✓ \u2028", TaskState.SUCCEEDED),
        (True, 40, 40, "All of the hold", TaskState.SUCCEEDED),
        (False, 30, 3, "No session: no message", TaskState.SUCCEEDED),
        (True, 0, 0, "A free model", TaskState.SUCCEEDED),
        (True, 20, 0, "", TaskState.CANCELLED),
    ],
)
async def test_a_settled_answer_is_stored_as_the_orm_stores_it(
    member: Account, in_session: bool, hold: int, cost: int, text: str, state: TaskState
) -> None:
    session_id = await a_session(member) if in_session else None
    old, new = await running(member, session_id, hold), await running(member, session_id, hold)
    old_ending = an_ending(old, cost, text=text, state=state)
    new_ending = an_ending(new, cost, text=text, state=state)
    assert await orm_settle(old_ending) == cost
    assert await settle(new_ending) is True
    assert await everything_of(new, {new_ending.message_id: "answer"}) == await everything_of(
        old, {old_ending.message_id: "answer"}
    )
    task = await Task.get(id=new.task_id)
    assert (task.state, task.cost, task.message_id) == (state, cost, new_ending.message_id)
    assert task.finished_at is not None and task.finished_at.utcoffset() == datetime.timedelta(0)
    if new_ending.message_id:
        message = await Message.get(id=new_ending.message_id)
        assert message.content == [{"type": "text", "text": text}]
        assert message.reference == REFERENCE
    assert await balance_of(member.id) == 1000 - 2 * cost
    await assert_ledger_balanced()


async def test_a_settle_that_is_not_the_usual_case_writes_nothing(member: Account) -> None:
    session_id = await a_session(member)
    new = await running(member, session_id, 20)
    before = await everything_of(new)
    # Another ender won (the task is not in the state this one saw).
    lost = replace(
        an_ending(new, 5, text="late", state=TaskState.SUCCEEDED), expected=TaskState.QUEUED
    )
    assert await settle(lost) is False
    # A charge above the hold: capped, which the ORM's transaction does.
    above = an_ending(new, 25, text="long", state=TaskState.SUCCEEDED)
    assert await settle(above) is False
    assert await everything_of(new) == before
    assert await Message.filter(id__in=[lost.message_id, above.message_id]).count() == 0
    assert await orm_settle(above) == 20
    assert await settle(an_ending(new, 5, text="again", state=TaskState.SUCCEEDED)) is False
    assert await balance_of(member.id) == 980
    await assert_ledger_balanced()


class Trips:
    """Hops to aiosqlite's thread and statements Tortoise logged (PostgreSQL's trips)."""

    def __init__(self) -> None:
        self.hops = 0
        self.statements: list[str] = []


@contextmanager
def counted() -> Iterator[Trips]:
    trips = Trips()
    real = aiosqlite.Connection._execute

    async def hop(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.hops += 1
        return await real(self, fn, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patches:
        patches.setattr(aiosqlite.Connection, "_execute", hop)
        with logged_statements() as trips.statements:
            yield trips


async def test_each_transaction_is_one_trip(member: Account, write_path: str) -> None:
    """On SQLite none on the loop's own connection, one hop to aiosqlite's thread else."""
    new = a_task(member, await a_session(member), 30)
    sqlite = Task._meta.db.capabilities.dialect == "sqlite"
    trip = ((0 if write_path == "loop" else 1), 0) if sqlite else (0, 1)
    with counted() as trips:
        assert await record(new) is not None
    assert (trips.hops, len(trips.statements)) == trip, trips.statements
    await Task.filter(id=new.task_id).update(state=TaskState.RUNNING)
    with counted() as trips:
        assert await settle(an_ending(new, 10, text="hi", state=TaskState.SUCCEEDED))
    assert (trips.hops, len(trips.statements)) == trip, trips.statements
    assert await balance_of(member.id) == 990


@pytest.mark.sqlite_only
async def test_a_transaction_waits_for_another_coroutines_transaction(member: Account) -> None:
    """The one SQLite connection: written while another coroutine's transaction is open,
    the rows would join it and go with its rollback."""
    new = a_task(member, await a_session(member), 10)
    lock = Task._meta.db._lock

    class RolledBack(Exception):
        pass

    entered = asyncio.Event()

    async def write_once_entered() -> Task | None:
        await entered.wait()
        return await record(new)

    writing = asyncio.ensure_future(write_once_entered())  # outside the transaction
    with pytest.raises(RolledBack):
        async with in_transaction():
            await Assistant.create(owner_id=member.id, name="rolled back")
            entered.set()
            for _ in range(1000):  # until it waits for the lock (or, unlocked, is done)
                if lock._waiters or writing.done():
                    break
                await asyncio.sleep(0)
            raise RolledBack
    assert await writing is not None
    assert await Task.exists(id=new.task_id)
    assert await balance_of(member.id) == 990
    assert not await Assistant.exists(name="rolled back")


async def test_concurrent_holds_never_overdraw(member: Account) -> None:
    """On PostgreSQL each on a connection of its own, deciding on the balance it finds
    once the earlier ones have committed."""
    session_id = await a_session(member)
    recorded = await asyncio.gather(*(record(a_task(member, session_id, 150)) for _ in range(9)))
    assert sum(task is not None for task in recorded) == 6
    assert await balance_of(member.id) == 100
    await assert_ledger_balanced()


async def test_of_racing_enders_one_settles(member: Account) -> None:
    new = await running(member, await a_session(member), 40)
    done = an_ending(new, 10, text="done", state=TaskState.SUCCEEDED)
    cancelled = an_ending(new, 4, text="cut", state=TaskState.CANCELLED)
    outcomes = await asyncio.gather(settle(done), settle(cancelled), settle(done))
    assert sorted(outcomes) == [False, False, True]
    task = await Task.get(id=new.task_id)
    winner = done if task.state is TaskState.SUCCEEDED else cancelled
    assert task.cost == winner.cost and task.message_id == winner.message_id
    assert await Message.filter(task_id=new.task_id, role="assistant").count() == 1
    assert await balance_of(member.id) == 1000 - winner.cost
    await assert_ledger_balanced()
