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
    blocking = {name: why for name, why in failures.items() if name not in probes.advisory}
    if blocking:
        return error_response(503, down_message(blocking))
    if failures:
        # Serving, but a part is missing (a queue without a live worker): named for the
        # operator, while the load balancer keeps sending everything else here.
        return {
            "status": "degraded",
            "message": down_message(failures, "Degraded"),
            "down": failures,
        }
    return {"status": "ready"}
