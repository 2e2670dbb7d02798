"""The worker's claim as fixed SQL (backend/models/task_claim.py) changes and returns what
Tortoise's `UPDATE … RETURNING` did, on SQLite and PostgreSQL, and builds no query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

from tortoise.queryset import UpdateQuery

from backend.models import Task
from backend.models.task_claim import claim_queued
from backend.models.tasks import TaskState
from tests.support.accounts import create_account
from tests.support.orm_answer_writes import orm_claim
from workers.jobs.chat import claim


def fields_of(instance: Task) -> dict:
    return {name: getattr(instance, name) for name in instance._meta.fields_db_projection}


async def queued_task(user_id: int, **values: object) -> Task:
    return await Task.create(
        user_id=user_id,
        model="m",
        request={"messages": [{"role": "user", "content": "é"}]},
        **values,
    )


async def test_the_claim_is_the_orm_claim(client, settings) -> None:
    account = await create_account(settings, password=False)
    lean_task = await queued_task(account.id, attempts=2, prompt_tokens=5)
    orm_task = await queued_task(account.id, attempts=2, prompt_tokens=5)
    lean = await claim_queued(lean_task.id)
    assert lean is not None
    orm = await orm_claim(orm_task.id, lean.started_at)
    assert orm is not None
    ignored = {"id", "created_at"}
    returned, expected = fields_of(lean), fields_of(orm)
    assert {k: v for k, v in returned.items() if k not in ignored} == {
        k: v for k, v in expected.items() if k not in ignored
    }
    assert lean.state is TaskState.RUNNING and lean.attempts == 3
    assert lean.request == {"messages": [{"role": "user", "content": "é"}]}
    assert abs(lean.started_at - datetime.now(UTC)) < timedelta(minutes=1)
    # Stored as the ORM stores it: read back, both rows agree.
    stored, orm_stored = await Task.get(id=lean_task.id), await Task.get(id=orm_task.id)
    assert stored.started_at == orm_stored.started_at == lean.started_at
    assert (stored.state, stored.attempts) == (orm_stored.state, orm_stored.attempts)
    assert await Task.filter(state=TaskState.RUNNING, id=lean_task.id).exists()


async def test_a_task_not_queued_is_not_claimed(client, settings) -> None:
    account = await create_account(settings, password=False)
    task = await queued_task(account.id)
    assert await claim(task.id) is not None
    assert await claim(task.id) is None  # a duplicate delivery does nothing
    cancelled = await queued_task(account.id, state=TaskState.CANCELLED)
    assert await claim(cancelled.id) is None
    assert await claim("no-such-task") is None
    stored = await Task.get(id=cancelled.id)
    assert stored.state is TaskState.CANCELLED and stored.attempts == 0
    assert stored.started_at is None
    assert (await Task.get(id=task.id)).attempts == 1


async def test_the_claim_builds_no_query(client, settings) -> None:
    """The point of the module: no pypika UPDATE is built per claim."""
    account = await create_account(settings, password=False)
    task = await queued_task(account.id)
    with mock.patch.object(UpdateQuery, "_make_query", side_effect=AssertionError("built")):
        claimed = await claim(task.id)
    assert claimed is not None and claimed.id == task.id
