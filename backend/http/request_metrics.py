"""Counting requests (by route template and status, with latency) and open streams.

Requests are counted in Quart's after_request, where the matched rule is known (a path
would give one series per id). Open SSE and WebSocket connections are counted at the
ASGI level, where a connection's whole life is visible: an HTTP response whose headers
say `text/event-stream` counts as an SSE connection until its body ends (or the client
leaves); a WebSocket counts once accepted, until it closes.
"""

from __future__ import annotations

import time
from typing import Any

from quart import Quart, g, request

from backend.metrics.instruments import HTTP_REQUESTS, HTTP_SECONDS, OPEN_CONNECTIONS

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
ASGIApp = Any


def route_of() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


def register_request_metrics(app: Quart) -> None:
    @app.before_request
    async def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    async def count_request(response):
        method = request.method if request.method in METHODS else "OTHER"
        route = route_of()
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)
        return response


class ConnectionMetrics:
    """ASGI middleware keeping `sluice_open_connections` by kind."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        counted: list[str] = []

        async def counting_send(message: dict) -> None:
            if not counted:
                if message["type"] == "websocket.accept":
                    counted.append("websocket")
                elif message["type"] == "http.response.start" and is_event_stream(message):
                    counted.append("sse")
                if counted:
                    OPEN_CONNECTIONS.labels(counted[0]).inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if counted:
                OPEN_CONNECTIONS.labels(counted[0]).dec()


def is_event_stream(message: dict) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return value.lower().startswith(b"text/event-stream")
    return False
