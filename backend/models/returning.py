"""`UPDATE … RETURNING`: a conditional update and the row it changed, in one statement.

Hot paths (a chat worker claiming its task, a reservation being settled, a balance
moving) updated a row and then read it back: two statements, and on SQLite two hops to
aiosqlite's thread and back. SQLite (3.35 and later) and PostgreSQL both return the
updated rows from the UPDATE itself. Tortoise builds the UPDATE (filters, expressions
such as `F("attempts") + 1`, each field's value conversion for the dialect); this only
adds the RETURNING clause, so the SQL is Tortoise's own for either database. Rows that
did not match the filter are not returned: an empty list is a lost race, as 0 is for
`.update()`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from tortoise.models import Model
from tortoise.queryset import UpdateQuery

M = TypeVar("M", bound=Model)


async def update_returning_values(query: UpdateQuery, *fields: str) -> list[dict[str, Any]]:
    """Run `Model.filter(…).update(…)` (not awaited) and return `fields` of each updated
    row as the database gave them (ints and strings: no Python conversion)."""
    model = query.model
    columns = [model._meta.fields_db_projection[name] for name in fields]
    query._choose_db_if_not_chosen(True)
    query._make_query()
    query.query = query.query.returning(*columns)
    # execute_query_dict: asyncpg's execute_query drops the rows of an UPDATE.
    rows = await query._db.execute_query_dict(*query.query.get_parameterized_sql())
    return [dict(zip(fields, (row[column] for column in columns), strict=True)) for row in rows]


async def update_returning(query: UpdateQuery) -> list[Any]:
    """Run `Model.filter(…).update(…)` (not awaited) and return the updated rows as model
    instances, exactly as `Model.get` would have loaded them after the update."""
    model = query.model
    query._choose_db_if_not_chosen(True)
    query._make_query()
    query.query = query.query.returning(*model._meta.fields_db_projection.values())
    rows = await query._db.execute_query_dict(*query.query.get_parameterized_sql())
    return [model._init_from_db(**row) for row in rows]
