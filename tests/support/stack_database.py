"""A live stack's own SQL database: a SQLite file of its own, or a throwaway PostgreSQL
database on the session's server in the PostgreSQL pass.

Why: a chat worker's reaper fails every RUNNING task whose heartbeat it cannot see under
its Redis prefix, and an ingest worker's sweeper re-queues every started document whose
lease it cannot see. In production one database serves one deployment's workers, so that
is right; in the suite, stacks under different prefixes on one database failed each
other's tasks and took each other's documents. So each live stack gets a database of its
own, and within `stack_database` the test process's ORM answers from it as well (rows a
test makes through the services, or reads back, are the stack's). A stack whose caller
gave it a database of its own (a private PostgreSQL cluster) keeps that one.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tortoise import context as tortoise_context
from tortoise.context import TortoiseContext

from backend.database import tortoise_config
from backend.settings import Settings

# The admin DSN the session's throwaway PostgreSQL databases are made with.
TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


# The session's shared database (tests/conftest.py makes it with `session_database`), and
# by its URL the migrated empty database each stack's is copied from (made on first use:
# a copy takes milliseconds, a migration seconds).
SHARED: set[str] = set()
TEMPLATES: dict[str, str] = {}


def admin_dsn() -> str:
    return TEST_POSTGRES_URL.replace("postgres://", "postgresql://", 1)


async def create_postgres_database(
    name: str | None = None, template: str | None = None
) -> tuple[str, str]:
    """A new database on the test server, empty or a copy of `template`: (name, URL)."""
    import asyncpg

    name = name or f"sluice_test_{uuid.uuid4().hex[:12]}"
    copying = f' TEMPLATE "{template}"' if template else ""
    conn = await asyncpg.connect(admin_dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"{copying}')
    finally:
        await conn.close()
    return name, f"{TEST_POSTGRES_URL.rsplit('/', 1)[0]}/{name}"


async def drop_postgres_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def session_database(directory: Path) -> AsyncIterator[str]:
    """The session's database URL: a throwaway PostgreSQL database with TEST_DATABASE=postgres,
    else a SQLite file in `directory`; dropped after."""
    if os.environ.get("TEST_DATABASE", "sqlite") != "postgres":
        url = f"sqlite://{directory / 'sluice.sqlite3'}"
        SHARED.add(url)
        yield url
        return
    name, url = await create_postgres_database()
    SHARED.add(url)
    try:
        yield url
    finally:
        await drop_postgres_database(name)
        await drop_postgres_database(template_name(url))


def template_name(session_url: str) -> str:
    return session_url.rsplit("/", 1)[1] + "_template"


async def template_of(session: Settings) -> str:
    """The session's migrated empty database (made on first use): its URL."""
    # Imported here: tests/conftest.py imports this module before pytest registers
    # tests.support.live_server (which own_database imports) as a plugin to rewrite.
    from tests.support.own_database import migrate

    if session.database_url not in TEMPLATES:
        if session.database_url.startswith("postgres"):
            _, url = await create_postgres_database(template_name(session.database_url))
        else:
            url = session.database_url.removesuffix(".sqlite3") + "-template.sqlite3"
        await asyncio.to_thread(migrate, session.model_copy(update={"database_url": url}))
        TEMPLATES[session.database_url] = url
    return TEMPLATES[session.database_url]


def copy_sqlite(source: str, target: str) -> None:
    """A consistent copy of the SQLite database `source` (a URL) at `target` (a URL)."""
    origin = sqlite3.connect(source.removeprefix("sqlite://"))
    copy = sqlite3.connect(target.removeprefix("sqlite://"))
    try:
        origin.backup(copy)
    finally:
        copy.close()
        origin.close()


@asynccontextmanager
async def answering_from(settings: Settings) -> AsyncIterator[None]:
    """The test process's ORM (models used directly, services, the in-process app)
    queries `settings`' database within the block, the session's again after it.

    The session's connection is Tortoise's global context (the app's lifespan task set
    it); this swaps that global for a context on the stack's database. Tortoise has no
    public call to replace a global context, hence the module attribute."""
    previous = tortoise_context._global_context
    own = TortoiseContext()
    await own.init(config=tortoise_config(settings, serving=True))
    tortoise_context._global_context = own
    try:
        yield
    finally:
        tortoise_context._global_context = previous
        await own.close_connections()


@asynccontextmanager
async def stack_database(base: Settings, directory: Path) -> AsyncIterator[Settings]:
    """`base` with a new migrated database of the same kind (a SQLite file in `directory`),
    the test process's ORM answering from it, dropped after; `base` as it is when its
    database is not the session's shared one."""
    if base.database_url not in SHARED:
        yield base
        return
    template = await template_of(base)
    name = None
    if base.database_url.startswith("postgres"):
        name, url = await create_postgres_database(template=template.rsplit("/", 1)[1])
    else:
        url = f"sqlite://{directory / f'stack-{uuid.uuid4().hex[:8]}.sqlite3'}"
        copy_sqlite(template, url)
    settings = base.model_copy(update={"database_url": url})
    try:
        async with answering_from(settings):
            yield settings
    finally:
        if name is not None:
            await drop_postgres_database(name)
