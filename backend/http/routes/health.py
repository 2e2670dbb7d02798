"""Liveness and readiness probes."""

from __future__ import annotations

from quart import Blueprint, current_app
from quart_schema import hide
from tortoise import connections

from backend.http.responses import error_response

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
@hide
async def healthz():
    return {"status": "ok"}


@blueprint.get("/readyz")
@hide
async def readyz():
    down = []
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:
        down.append("sql")
    try:
        await current_app.config["REDIS"].ping()
    except Exception:
        down.append("redis")
    if down:
        return error_response(503, "Not ready: unreachable " + ", ".join(down))
    return {"status": "ready"}
