"""Liveness and readiness probes."""

from __future__ import annotations

from quart import Blueprint, current_app
from quart_schema import hide

from backend.http.responses import error_response
from backend.services.readiness import ReadinessProbes, down_message

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
@hide
async def healthz():
    return {"status": "ok"}


@blueprint.get("/readyz")
@hide
async def readyz():
    """503 naming every dependency that is down, and why; within READINESS_TIMEOUT_SECONDS
    whatever hangs (backend/services/readiness.py)."""
    probes: ReadinessProbes = current_app.config["READINESS"]
    failures = await probes.down(current_app.config["SETTINGS"].readiness_timeout_seconds)
    if failures:
        return error_response(503, down_message(failures))
    return {"status": "ready"}
