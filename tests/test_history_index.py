"""A turn's history read (lean_reads.history_page, read for every answer) walks the
session's messages in index order (migration 0004): without the index it scanned every
user's messages and sorted the session's, a cost that grew with the whole table
(bench/bench_history_index.py)."""

from __future__ import annotations

from tortoise import connections

from backend.models.lean_reads import history_page_sql
from tests.support.query_plans import query_plan

PARAMETERS = ["a-session", 64, 0]


async def test_history_read_uses_the_index_without_a_sort(client) -> None:
    dialect = connections.get("default").capabilities.dialect
    plan = await query_plan(history_page_sql(dialect), PARAMETERS)
    if dialect == "postgres":
        assert "Index Scan Backward" in plan, plan
        assert "Sort" not in plan and "Seq Scan" not in plan, plan
    else:
        assert "SEARCH messages USING INDEX" in plan, plan
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
