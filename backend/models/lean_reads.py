"""The reads every request or answer makes, as fixed SQL built once per process.

Tortoise builds each query with pypika on every call: for a one-row read by primary key
that took about 300 µs of CPU, five times the statement's own round trip to aiosqlite's
thread (bench/bench_web_paths.py). These reads run on every answer or request: the
caller's user row (every JWT request) or API key with its user (every `sk-` request),
the chat session with its assistant and the session's newest messages (every answer),
a task of the user's (every stream opening and status poll). Their SQL is written once
per dialect, with the columns taken from the models and the dialect's placeholders
(`?` on SQLite, `$n` on PostgreSQL, the two databases Sluice runs on), and rows become
model instances through Tortoise's own `_init_from_db`, so values are converted exactly
as `Model.get` converts them.

The connection is looked up per call, as Tortoise does, so a read inside a transaction
runs on the transaction's connection. Outside one, on SQLite, the read runs on the event
loop's own read-only connection (backend/models/loop_reads.py), without the hop to
aiosqlite's thread.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

from backend.models import loop_reads
from backend.models.chats import Assistant, ChatSession, Message
from backend.models.tasks import Task
from backend.models.users import ApiKey, User

ROW_ALIAS = "s"
RELATED_ALIAS = "a"


def connection(model: type[Model]) -> BaseDBAsyncClient:
    return model._meta.db


async def read(db: BaseDBAsyncClient, sql: str, values: list[Any]) -> list[dict]:
    """`db.execute_query_dict`, on the loop's thread when SQLite allows it."""
    rows = loop_reads.rows(db, sql, values)
    return rows if rows is not None else await db.execute_query_dict(sql, values)


@cache
def placeholders(dialect: str, count: int) -> tuple[str, ...]:
    if dialect == "postgres":
        return tuple(f"${n}" for n in range(1, count + 1))
    return ("?",) * count


def columns(model: type[Model]) -> tuple[str, ...]:
    return tuple(model._meta.fields_db_projection.values())


def aliased(model: type[Model], alias: str) -> str:
    """`s."id" AS "s__id", …`: a joined row's columns, told apart by their alias."""
    return ",".join(f'{alias}."{c}" AS "{alias}__{c}"' for c in columns(model))


def unaliased(row: dict[str, Any], alias: str) -> dict[str, Any]:
    start = len(alias) + 2
    return {key[start:]: value for key, value in row.items() if key.startswith(alias + "__")}


@cache
def user_by_id_sql(dialect: str) -> str:
    (p,) = placeholders(dialect, 1)
    listed = ",".join(f'"{c}"' for c in columns(User))
    return f'SELECT {listed} FROM "{User._meta.db_table}" WHERE "id"={p} LIMIT 1'


async def user_by_id(user_id: int) -> User | None:
    """`User.get_or_none(id=user_id)`."""
    db = connection(User)
    rows = await read(db, user_by_id_sql(db.capabilities.dialect), [user_id])
    return User._init_from_db(**rows[0]) if rows else None


def joined_sql(row: type[Model], related: type[Model], foreign_key: str, where: str) -> str:
    """A row of `row` and the `related` row its `foreign_key` column names, each column
    aliased by its table (`s__id`, `a__id`); `where` uses `s.` for `row`'s columns."""
    return (
        f"SELECT {aliased(row, ROW_ALIAS)},{aliased(related, RELATED_ALIAS)} "
        f'FROM "{row._meta.db_table}" {ROW_ALIAS} '
        f'JOIN "{related._meta.db_table}" {RELATED_ALIAS} '
        f'ON {RELATED_ALIAS}."id"={ROW_ALIAS}."{foreign_key}" WHERE {where} LIMIT 1'
    )


@cache
def owned_session_sql(dialect: str) -> str:
    first, second = placeholders(dialect, 2)
    where = f'{ROW_ALIAS}."id"={first} AND {ROW_ALIAS}."user_id"={second}'
    return joined_sql(ChatSession, Assistant, "assistant_id", where)


async def owned_session(session_id: str, user_id: int) -> ChatSession | None:
    """`ChatSession.filter(id=…, user_id=…).select_related("assistant").first()`: the
    session, with `session.assistant` loaded, if `user_id` owns it."""
    db = connection(ChatSession)
    rows = await read(db, owned_session_sql(db.capabilities.dialect), [session_id, user_id])
    if not rows:
        return None
    session = ChatSession._init_from_db(**unaliased(rows[0], ROW_ALIAS))
    session.assistant = Assistant._init_from_db(**unaliased(rows[0], RELATED_ALIAS))
    return session


@cache
def live_api_key_sql(dialect: str) -> str:
    (p,) = placeholders(dialect, 1)
    where = f'{ROW_ALIAS}."key_hash"={p} AND {ROW_ALIAS}."revoked_at" IS NULL'
    return joined_sql(ApiKey, User, "user_id", where)


async def live_api_key(key_hash: str) -> ApiKey | None:
    """`ApiKey.get_or_none(key_hash=…, revoked_at=None).select_related("user")`: read on
    every request made with an API key (the OpenAI and RAGFlow SDKs' way in)."""
    db = connection(ApiKey)
    rows = await read(db, live_api_key_sql(db.capabilities.dialect), [key_hash])
    if not rows:
        return None
    api_key = ApiKey._init_from_db(**unaliased(rows[0], ROW_ALIAS))
    api_key.user = User._init_from_db(**unaliased(rows[0], RELATED_ALIAS))
    return api_key


@cache
def owned_task_sql(dialect: str) -> str:
    first, second = placeholders(dialect, 2)
    listed = ",".join(f'"{c}"' for c in columns(Task))
    return (
        f'SELECT {listed} FROM "{Task._meta.db_table}" '
        f'WHERE "id"={first} AND "user_id"={second} LIMIT 1'
    )


async def owned_task(task_id: str, user_id: int) -> Task | None:
    """`Task.get_or_none(id=…, user_id=…)`: read by every stream reader's opening (SSE
    resume, WebSocket subscribe) and every status poll."""
    db = connection(Task)
    rows = await read(db, owned_task_sql(db.capabilities.dialect), [task_id, user_id])
    return Task._init_from_db(**rows[0]) if rows else None


@cache
def history_page_sql(dialect: str) -> str:
    session, limit, offset = placeholders(dialect, 3)
    return (
        f'SELECT "role","content" FROM "{Message._meta.db_table}" WHERE "session_id"={session} '
        f'ORDER BY "created_at" DESC,"id" DESC LIMIT {limit} OFFSET {offset}'
    )


async def history_page(session_id: str, limit: int, offset: int) -> list[tuple[str, Any]]:
    """A session's messages, newest first, as (role, content) pairs: what
    `Message.filter(session_id=…).order_by("-created_at", "-id").offset(…).limit(…)
    .values_list("role", "content")` returns, the role as its plain string."""
    db = connection(Message)
    rows = await read(db, history_page_sql(db.capabilities.dialect), [session_id, limit, offset])
    content = Message._meta.fields_map["content"]
    return [(row["role"], content.to_python_value(row["content"])) for row in rows]
