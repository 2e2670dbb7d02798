"""Counting requests (by route template and status, with latency) and open streams.

Requests are counted in Quart's after_request, where the matched rule is known (a path
would give one series per id). Open SSE and WebSocket connections are counted at the
ASGI level, where a connection's whole life is visible: an HTTP response whose headers
say `text/event-stream` counts as an SSE connection until its body ends (or the client
leaves); a WebSocket counts once accepted, until it closes. The HTTP side is counted by
the body limits' `send` wrapper (backend/http/body_limits.py), which every response
already passes through: a second wrapper cost every SSE frame another coroutine call.
"""

from __future__ import annotations

import time
from typing import Any

from quart import Quart, g, request

from backend.metrics.instruments import HTTP_REQUESTS, HTTP_SECONDS, OPEN_CONNECTIONS

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Each series' children, kept: `labels()` checks and locks on every call (two a request).
# Bounded by routes x methods x statuses.
SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}
UNMATCHED = "unmatched"
SSE = "sse"
WEBSOCKET = "websocket"
ASGIApp = Any


def route_of() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


def series(route: str, method: str, status: int) -> tuple[Any, Any]:
    """The request counter's and the latency histogram's children for these labels."""
    key = (route, method, status)
    children = SERIES.get(key)
    if children is None:
        children = (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_SECONDS.labels(route, method),
        )
        SERIES[key] = children
    return children


def register_request_metrics(app: Quart) -> None:
    @app.before_request
    async def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    async def count_request(response):
        method = request.method
        counted, timed = series(
            route_of(), method if method in METHODS else "OTHER", response.status_code
        )
        counted.inc()
        started = g.get("metrics_started")
        if started is not None:
            timed.observe(time.perf_counter() - started)
        return response


def count_open_stream(start: dict) -> bool:
    """Count the response `start` begins as an open SSE connection if it is one; True if
    it was counted (then `stream_closed` when it ends)."""
    if is_event_stream(start):
        OPEN_CONNECTIONS.labels(SSE).inc()
        return True
    return False


def stream_closed() -> None:
    OPEN_CONNECTIONS.labels(SSE).dec()


class ConnectionMetrics:
    """ASGI middleware keeping `sluice_open_connections` for WebSockets (SSE responses
    are counted by `count_open_stream`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        counted: list[str] = []

        async def counting_send(message: dict) -> None:
            if not counted and message["type"] == "websocket.accept":
                counted.append(WEBSOCKET)
                OPEN_CONNECTIONS.labels(WEBSOCKET).inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if counted:
                OPEN_CONNECTIONS.labels(WEBSOCKET).dec()


def is_event_stream(message: dict) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return value.lower().startswith(b"text/event-stream")
    return False
