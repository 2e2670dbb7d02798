"""SQL connection lifecycle and schema migrations (Tortoise's own migration engine)."""

from __future__ import annotations

from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.migrations.api import migrate

from backend.models import loop_reads
from backend.settings import Settings

MIGRATIONS_PACKAGE = "backend.migrations"
# Transactions that begin with the write lock (backend/sqlite_engine.py).
SQLITE_ENGINE = "backend.sqlite_engine"
# WAL (Tortoise's default) with synchronous=NORMAL: commits don't wait for fsync, and the
# database can't be corrupted; only a power loss can drop the last commits. Any of these
# can be overridden in DATABASE_URL, e.g. `?synchronous=FULL`.
SQLITE_PRAGMAS = {"busy_timeout": 15000, "synchronous": "NORMAL"}


def normalize_url(url: str) -> str:
    """Accept the URL spellings operators use (`postgresql://`, `sqlite:///abs`)."""
    if url.startswith("postgresql://"):
        url = "postgres://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite://"):
        for pragma, value in SQLITE_PRAGMAS.items():
            if f"{pragma}=" not in url:
                url += ("&" if "?" in url else "?") + f"{pragma}={value}"
    return url


def tortoise_config(settings: Settings, *, serving: bool = False) -> dict[str, Any]:
    """`serving`: the service's own connections, SQLite's with `SQLITE_ENGINE`."""
    url = normalize_url(settings.effective_database_url)
    connection: str | dict[str, Any] = url
    if serving and url.startswith("sqlite://"):
        connection = {**expand_db_url(url), "engine": SQLITE_ENGINE}
    return {
        "connections": {"default": connection},
        "apps": {
            "models": {
                "models": ["backend.models"],
                "default_connection": "default",
                "migrations": MIGRATIONS_PACKAGE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def ensure_sqlite_dir(settings: Settings) -> None:
    """The default SQLite file lives in DATA_DIR: made only then, so a process with
    DATABASE_URL and STORAGE_URL set elsewhere never touches DATA_DIR."""
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)


async def migrate_database(settings: Settings) -> None:
    ensure_sqlite_dir(settings)
    await migrate(config=tortoise_config(settings))
    await Tortoise.close_connections()


async def open_database(settings: Settings) -> None:
    ensure_sqlite_dir(settings)
    # Lifespan hooks run in another task than requests, so the context must be global.
    await Tortoise.init(
        config=tortoise_config(settings, serving=True), _enable_global_fallback=True
    )


async def close_database() -> None:
    loop_reads.close()
    await Tortoise.close_connections()
