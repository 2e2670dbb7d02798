"""A chat worker's claim of its task (queued → running), as fixed SQL built once.

The claim is on every answer's way to its first token: the worker sends the provider
nothing before it. Tortoise built its `UPDATE … RETURNING` with pypika on every call
(filters, the `attempts + 1` expression, each value's conversion), which took about as
long as the statement's own hop to aiosqlite's thread and back
(`python -m bench.bench_first_token_paths`). Here the statement is written once per
dialect, its values converted by the fields' own `to_db_value` as Tortoise's UPDATE
converts them, and the row comes back through Tortoise's `_init_from_db`, as
`Model.get` loads it. On SQLite it runs on the loop's own connection when it can
(`backend.models.loop_writes`), without the hop to aiosqlite's thread.
"""

from __future__ import annotations

from functools import cache

from tortoise import timezone

from backend.models import loop_writes
from backend.models.lean_reads import columns, connection, placeholders
from backend.models.returning import returning_clause
from backend.models.tasks import Task, TaskState


@cache
def claim_sql(dialect: str) -> str:
    state, started_at, task_id, queued = placeholders(dialect, 4)
    return (
        f'UPDATE "{Task._meta.db_table}" SET "state"={state},"started_at"={started_at},'
        f'"attempts"="attempts"+1 WHERE "id"={task_id} AND "state"={queued}'
        + returning_clause(columns(Task))
    )


async def claim_queued(task_id: str) -> Task | None:
    """`Task.filter(id=task_id, state=QUEUED).update(state=RUNNING, started_at=now,
    attempts=F("attempts") + 1)` and the updated row; None if the task was not queued."""
    fields = Task._meta.fields_map
    state, started_at = fields["state"], fields["started_at"]
    values = [
        state.to_db_value(TaskState.RUNNING, None),
        started_at.to_db_value(timezone.now(), None),
        task_id,
        state.to_db_value(TaskState.QUEUED, None),
    ]
    db = connection(Task)
    sql = claim_sql(db.capabilities.dialect)
    rows = loop_writes.rows(db, sql, values)  # on the loop's thread when SQLite allows it
    if rows is None:
        # execute_query_dict: asyncpg's execute_query drops the rows of an UPDATE.
        rows = await db.execute_query_dict(sql, values)
    return Task._init_from_db(**rows[0]) if rows else None
