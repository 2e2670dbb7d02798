"""A turn's history read (lean_reads.history_page, read for every answer) walks the
session's messages in index order (migration 0004): without the index it scanned every
user's messages and sorted the session's, a cost that grew with the whole table
(bench/bench_history_index.py)."""

from __future__ import annotations

from tortoise import connections
from tortoise.transactions import in_transaction

from backend.models.lean_reads import history_page_sql

PARAMETERS = ["a-session", 64, 0]


async def sqlite_plan(sql: str) -> list[str]:
    rows = await connections.get("default").execute_query_dict(
        f"EXPLAIN QUERY PLAN {sql}", PARAMETERS
    )
    return [row["detail"] for row in rows]


async def postgres_plan(sql: str) -> list[str]:
    # With sequential scans priced out, the planner takes an index when one serves; the
    # setting is the transaction's own.
    async with in_transaction() as db:
        await db.execute_script("SET LOCAL enable_seqscan = off")
        rows = await db.execute_query_dict(f"EXPLAIN {sql}", PARAMETERS)
    return [row["QUERY PLAN"] for row in rows]


async def test_history_read_uses_the_index_without_a_sort(client) -> None:
    dialect = connections.get("default").capabilities.dialect
    sql = history_page_sql(dialect)
    if dialect == "postgres":
        plan = " | ".join(await postgres_plan(sql))
        assert "Index Scan Backward" in plan, plan
        assert "Sort" not in plan and "Seq Scan" not in plan, plan
    else:
        plan = " | ".join(await sqlite_plan(sql))
        assert "SEARCH messages USING INDEX" in plan, plan
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
