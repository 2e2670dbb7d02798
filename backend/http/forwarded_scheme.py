"""Behind a TLS-terminating proxy, a WebSocket's scheme is `wss`, not `https`.

Hypercorn's `ProxyFixMiddleware` copies `X-Forwarded-Proto` into the ASGI scope as it
is, for HTTP and WebSocket scopes alike, so a WebSocket proxied by nginx
(`X-Forwarded-Proto: https`) arrives with scheme `https`. Quart matches routes by
scheme: a WebSocket with an HTTP scheme is routed as a plain GET (the socket's route
answers 426). This sits inside the proxy fix and names the scheme as the ASGI
specification does for WebSockets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

ASGIApp = Callable[
    [dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]
]
SOCKET_SCHEMES = {"https": "wss", "http": "ws"}


class WebSocketScheme:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope.get("scheme") in SOCKET_SCHEMES:
            scope = {**scope, "scheme": SOCKET_SCHEMES[scope["scheme"]]}
        await self.app(scope, receive, send)
