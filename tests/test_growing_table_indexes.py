"""The statements the service runs regularly on tables that grow with use walk an index of
migration 0005 instead of scanning the table: the task reaper's live tasks, a deleted
session's tasks, a user's sessions of an assistant, the credits history, a user's API
keys, ingest recovery's running documents (bench/bench_growing_indexes.py).

Each statement is the product's query built by Tortoise (or the foreign key's own
action); its plan must name the index on the expected columns, which exists only once
0005 has run, and scan no table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tortoise import connections

from backend.knowledge import ingest_recovery
from backend.models import ApiKey, ChatSession, CreditEntry, Document, Task
from backend.models.knowledge import DocumentRun
from backend.models.tasks import TaskState
from backend.services import task_recovery
from tests.support.query_plans import query_plan

NOW = datetime(2026, 12, 6, tzinfo=UTC)

# (table, the index's columns, the statement it serves)
STATEMENTS = [
    (
        "tasks",
        ("state", "created_at"),
        lambda: (
            Task.filter(state=TaskState.QUEUED, created_at__lt=NOW)
            .only(*task_recovery.SLIM)
            .sql(params_inline=True)
        ),
    ),
    (
        "tasks",
        ("state", "created_at"),
        lambda: (
            Task.filter(state=TaskState.RUNNING, started_at__lt=NOW)
            .only(*task_recovery.SLIM)
            .sql(params_inline=True)
        ),
    ),
    # What a session's deletion does to its tasks (the foreign key's ON DELETE SET NULL).
    (
        "tasks",
        ("session_id",),
        lambda: """UPDATE "tasks" SET "session_id"=NULL WHERE "session_id"='s'""",
    ),
    (
        "chat_sessions",
        ("assistant_id", "user_id", "created_at"),
        lambda: (
            ChatSession.filter(assistant_id="a", user_id=1)
            .order_by("-created_at", "id")
            .offset(0)
            .limit(30)
            .sql(params_inline=True)
        ),
    ),
    # What an assistant's deletion does to its sessions (ON DELETE CASCADE).
    (
        "chat_sessions",
        ("assistant_id", "user_id", "created_at"),
        lambda: """DELETE FROM "chat_sessions" WHERE "assistant_id"='a'""",
    ),
    (
        "credit_entries",
        ("user_id", "id"),
        lambda: (
            CreditEntry.filter(user_id=1)
            .order_by("-id")
            .offset(0)
            .limit(30)
            .sql(params_inline=True)
        ),
    ),
    (
        "credit_entries",
        ("user_id", "id"),
        lambda: CreditEntry.filter(user_id=1).count().sql(params_inline=True),
    ),
    (
        "api_keys",
        ("user_id", "created_at"),
        lambda: (
            ApiKey.filter(user_id=1, revoked_at=None)
            .order_by("created_at", "id")
            .sql(params_inline=True)
        ),
    ),
    (
        "documents",
        ("run",),
        lambda: (
            Document.filter(run=DocumentRun.RUNNING, run_id__isnull=False)
            .only(*ingest_recovery.SLIM)
            .sql(params_inline=True)
        ),
    ),
]


async def index_on(table: str, columns: tuple[str, ...]) -> str | None:
    """The name of `table`'s index on exactly `columns`, in order, or None."""
    db = connections.get("default")
    if db.capabilities.dialect == "postgres":
        rows = await db.execute_query_dict(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", [table]
        )
        wanted = "(" + ", ".join(columns) + ")"
        found = [r["indexname"] for r in rows if r["indexdef"].replace('"', "").endswith(wanted)]
        return found[0] if found else None
    for index in await db.execute_query_dict(f'PRAGMA index_list("{table}")'):
        info = await db.execute_query_dict(f'PRAGMA index_info("{index["name"]}")')
        if tuple(row["name"] for row in sorted(info, key=lambda r: r["seqno"])) == columns:
            return index["name"]
    return None


@pytest.mark.parametrize(("table", "columns", "statement"), STATEMENTS)
async def test_statement_walks_its_index(client, table, columns, statement) -> None:
    name = await index_on(table, columns)
    assert name, f"no index on {table} {columns}"
    sql = statement()
    found = await query_plan(sql)
    assert name in found, (sql, found)
    assert "Seq Scan" not in found, (sql, found)
    assert f"SCAN {table}" not in found and "TEMP B-TREE FOR ORDER BY" not in found, (sql, found)
