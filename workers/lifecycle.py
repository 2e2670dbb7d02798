"""Start-up and shut-down shared by every worker: SQL, Redis, settings in the job context,
and the worker's own /metrics when WORKER_METRICS_PORT is set."""

from __future__ import annotations

from typing import Any

from backend.database import close_database, open_database
from backend.metrics.exposition import process_ended
from backend.metrics.worker_endpoint import WorkerMetricsEndpoint
from backend.observability import configure_logging
from backend.settings import get_settings
from backend.signing_key import SigningKeyError, signing_key


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        # The same key as the web process's (DATA_DIR/secret_key when SECRET_KEY is unset).
        signing_key(settings)
    except SigningKeyError as error:
        raise SystemExit(str(error)) from None
    await open_database(settings)
    ctx["settings"] = settings
    if settings.worker_metrics_port:
        ctx["metrics"] = WorkerMetricsEndpoint(settings, ctx["redis"])
        await ctx["metrics"].start()


async def shutdown(ctx: dict[str, Any]) -> None:
    if "metrics" in ctx:
        await ctx["metrics"].stop()
    await close_database()
    process_ended()


async def ping(ctx: dict[str, Any]) -> str:
    """A no-op job: enqueue it and await the result to prove a queue is being served."""
    return "pong"
