"""`UPDATE … RETURNING`: a conditional update and the row it changed, in one statement.

Hot paths (a reservation being settled, a balance moving) updated a row and then read
it back: two statements, and on SQLite two hops to aiosqlite's thread and back. SQLite
(3.35 and later) and PostgreSQL both return the updated rows from the UPDATE itself.
Tortoise builds the UPDATE (filters, expressions such as `F("credits") + 1`, each
field's value conversion for the dialect); this only adds the RETURNING clause, so the
SQL is Tortoise's own for either database. Rows that did not match the filter are not
returned: an empty list is a lost race, as 0 is for `.update()`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tortoise.queryset import UpdateQuery


@lru_cache(maxsize=64)
def returning_clause(columns: tuple[str, ...]) -> str:
    """` RETURNING "a","b"`: built once per column list (pypika building the terms on
    every call cost more than the SELECT it saves)."""
    return " RETURNING " + ",".join(f'"{column}"' for column in columns)


async def returning_rows(query: UpdateQuery, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    query._choose_db_if_not_chosen(True)
    query._make_query()
    sql, values = query.query.get_parameterized_sql()
    # execute_query_dict: asyncpg's execute_query drops the rows of an UPDATE.
    return await query._db.execute_query_dict(sql + returning_clause(columns), values)


async def update_returning_values(query: UpdateQuery, *fields: str) -> list[dict[str, Any]]:
    """Run `Model.filter(…).update(…)` (not awaited) and return `fields` of each updated
    row as the database gave them (ints and strings: no Python conversion)."""
    projection = query.model._meta.fields_db_projection
    columns = tuple(projection[name] for name in fields)
    rows = await returning_rows(query, columns)
    return [dict(zip(fields, (row[column] for column in columns), strict=True)) for row in rows]
