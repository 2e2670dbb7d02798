"""Cron job of the chat worker: end tasks whose worker died (see backend.services.task_recovery)."""

from __future__ import annotations

from typing import Any

from backend.services.task_recovery import reap_stale_tasks


async def reap_tasks(ctx: dict[str, Any]) -> int:
    return await reap_stale_tasks(ctx["redis"], ctx["settings"])
