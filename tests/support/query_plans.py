"""The plan the test database would run a statement with, as one line: SQLite's
`EXPLAIN QUERY PLAN` details, PostgreSQL's `EXPLAIN` with sequential scans priced out
(then the planner takes an index whenever one serves, whatever the table's size)."""

from __future__ import annotations

from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction


async def query_plan(sql: str, parameters: list[Any] | None = None) -> str:
    db = connections.get("default")
    if db.capabilities.dialect == "postgres":
        # The setting, and an EXPLAINed write, are the transaction's own.
        async with in_transaction() as tx:
            await tx.execute_script("SET LOCAL enable_seqscan = off")
            rows = await tx.execute_query_dict(f"EXPLAIN {sql}", parameters)
        return " | ".join(row["QUERY PLAN"] for row in rows)
    rows = await db.execute_query_dict(f"EXPLAIN QUERY PLAN {sql}", parameters)
    return " | ".join(row["detail"] for row in rows)
