"""SQL connection lifecycle and schema migrations (Tortoise's own migration engine)."""

from __future__ import annotations

from typing import Any

from tortoise import Tortoise
from tortoise.migrations.api import migrate

from backend.settings import Settings

MIGRATIONS_PACKAGE = "backend.migrations"


def normalize_url(url: str) -> str:
    """Accept the URL spellings operators use (`postgresql://`, `sqlite:///abs`)."""
    if url.startswith("postgresql://"):
        url = "postgres://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite://") and "busy_timeout" not in url:
        url += ("&" if "?" in url else "?") + "busy_timeout=15000"
    return url


def tortoise_config(settings: Settings) -> dict[str, Any]:
    return {
        "connections": {"default": normalize_url(settings.effective_database_url)},
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


async def migrate_database(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await migrate(config=tortoise_config(settings))
    await Tortoise.close_connections()


async def open_database(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Lifespan hooks run in another task than requests, so the context must be global.
    await Tortoise.init(config=tortoise_config(settings), _enable_global_fallback=True)


async def close_database() -> None:
    await Tortoise.close_connections()
