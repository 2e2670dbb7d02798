"""An answer's writes as the ORM made them before `backend.models.answer_writes` and
`backend.models.task_claim`: the reference their rows are compared with
(tests/test_answer_writes.py, tests/test_task_claim.py) and the old side of
bench/bench_answer_paths.py and bench/bench_first_token_paths.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise import timezone
from tortoise.expressions import F
from tortoise.queryset import UpdateQuery

from backend.models import Message, Task
from backend.models.answer_writes import NewTask, Settlement
from backend.models.chats import Role
from backend.models.credits import ReservationState
from backend.models.returning import returning_rows
from backend.models.tasks import TaskState
from backend.services import credits


async def orm_record(new: NewTask) -> Task:
    """The creation's transaction through the ORM (a refused hold raises 402)."""

    async def record() -> Task:
        reservation_id = await credits.hold(new.user_id, new.hold, task_id=new.task_id)
        if new.message_id is not None:
            await Message.create(
                id=new.message_id,
                session_id=new.session_id,
                role=Role.USER,
                content=new.content,
                task_id=new.task_id,
            )
        return await Task.create(
            id=new.task_id,
            user_id=new.user_id,
            session_id=new.session_id,
            model=new.model,
            request=new.request,
            reservation_id=reservation_id,
            user_message_id=new.message_id,
        )

    return await credits.atomically(record)


async def orm_settle(ending: Settlement) -> int | None:
    """The settle's transaction through the ORM: the charge, or None for a lost race."""

    async def run() -> int | None:
        won = await Task.filter(id=ending.task_id, state=ending.expected).update(
            state=ending.state,
            finished_at=timezone.now(),
            prompt_tokens=ending.prompt_tokens,
            completion_tokens=ending.completion_tokens,
            cost=ending.cost,
            message_id=ending.message_id,
        )
        if not won:
            return None
        charged = ending.cost
        if ending.reservation_id is not None:
            charged = await credits.close_reservation(
                ending.reservation_id, ReservationState.SETTLED, ending.cost
            )
            if charged != ending.cost:
                await Task.filter(id=ending.task_id).update(cost=charged)
        if ending.message_id:
            await Message.create(
                id=ending.message_id,
                session_id=ending.session_id,
                role=Role.ASSISTANT,
                content=ending.content,
                reference=ending.reference,
                prompt_tokens=ending.prompt_tokens,
                completion_tokens=ending.completion_tokens,
                task_id=ending.task_id,
            )
        return charged

    return await credits.atomically(run)


async def update_returning(query: UpdateQuery) -> list[Any]:
    """Run `Model.filter(…).update(…)` (not awaited) and return the updated rows as model
    instances, exactly as `Model.get` would have loaded them after the update."""
    model = query.model
    rows = await returning_rows(query, tuple(model._meta.fields_db_projection.values()))
    return [model._init_from_db(**row) for row in rows]


async def orm_claim(task_id: str, now: datetime | None = None) -> Task | None:
    """The worker's claim through Tortoise's query builder, plus the RETURNING clause."""
    claimed = await update_returning(
        Task.filter(id=task_id, state=TaskState.QUEUED).update(
            state=TaskState.RUNNING, started_at=now or timezone.now(), attempts=F("attempts") + 1
        )
    )
    return claimed[0] if claimed else None
