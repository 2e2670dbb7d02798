"""`GET /metrics`: Prometheus' text format, for the deployment's processes on this machine.

Guarded (backend/metrics/exposition.py `access_refusal`): METRICS_TOKEN as a bearer
token when set, else loopback clients only; METRICS_ENABLED=false turns it off (404).
"""

from __future__ import annotations

import logging

from quart import Blueprint, Response, abort, current_app, request
from quart_schema import hide

from backend.http.responses import error_response
from backend.metrics.exposition import QueueDepths, access_refusal, queue_depths, render

blueprint = Blueprint("metrics", __name__)
log = logging.getLogger("sluice.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@blueprint.get("/metrics")
@hide
async def metrics():
    settings = current_app.config["SETTINGS"]
    if not settings.metrics_enabled:
        abort(404)
    refusal = access_refusal(
        settings.metrics_token, request.headers.get("Authorization"), request.remote_addr
    )
    if refusal is not None:
        response = error_response(401 if settings.metrics_token else 403, refusal)
        if settings.metrics_token:
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    extra = []
    try:
        extra.append(
            QueueDepths(await queue_depths(current_app.config["REDIS"], settings.redis_prefix))
        )
    except Exception as exc:  # Redis down: /readyz says so; the other figures still count
        log.warning("queue depths unavailable: %s", exc)
    return Response(render(extra), content_type=CONTENT_TYPE)
