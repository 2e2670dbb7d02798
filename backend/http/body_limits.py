"""The one place that bounds what a request may send before its route runs.

An ASGI middleware around the whole app. Each route has a body limit: the small
JSON_BODY_MAX_BYTES unless the route declares a bigger one with `@body_limit` (uploads,
avatars, messages that carry images inline), and never more than MAX_BODY_BYTES. A
request whose Content-Length is over it gets 413 before the app sees it; a chunked one
is counted as it streams in and refused the moment it passes the limit, so the server
never reads (or spools to disk) more than the limit, whatever the framing. Query
strings carrying NUL (`%00`) are refused here too, for every route at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, HTTPScope
from quart import Quart
from werkzeug.exceptions import HTTPException

from backend.http.json_bodies import NUL_MESSAGE
from backend.http.request_metrics import count_open_stream, stream_closed
from backend.observability import accepted_request_id
from backend.settings import Settings
from schemas.envelope import ErrorBody

F = TypeVar("F", bound=Callable[..., Any])
LimitOf = Callable[[Settings], int]

LIMIT_ATTRIBUTE = "_sluice_body_limit"
# Room for a multipart body's boundaries, part headers and small fields around the file.
MULTIPART_OVERHEAD = 64 * 1024


def body_limit(limit_of: LimitOf) -> Callable[[F], F]:
    """Give a route a bigger body limit than JSON_BODY_MAX_BYTES, read from the settings.

    Put it right under the route decorator: the middleware looks it up on the
    registered view function.
    """

    def mark(view: F) -> F:
        setattr(view, LIMIT_ATTRIBUTE, limit_of)
        return view

    return mark


def too_large_message(limit: int) -> str:
    return (
        f"Request body too large: this route accepts at most {limit} bytes; "
        "send less (images and files through the upload routes)"
    )


def header(scope: HTTPScope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def send_error(send: ASGISendCallable, scope: HTTPScope, status: int, message: str) -> None:
    """The error envelope, sent directly; the connection closes after it, since the rest
    of the body is not read."""
    request_id = accepted_request_id(header(scope, b"x-request-id"))
    body = ErrorBody(code=status, message=message, request_id=request_id)
    payload = body.model_dump_json().encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"connection", b"close"),
            ],
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})


class StreamedBody:
    """Counts the body as the app receives it; past the limit it answers 413 (if the app
    has not started its response) and tells the app the client is gone.

    Its `send` is also where an SSE response is counted as an open connection
    (backend/http/request_metrics.py): every frame of a stream passes through each ASGI
    wrapper, so the response's one wrapper does both, and a body frame costs two
    attribute checks here."""

    def __init__(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable, limit: int
    ) -> None:
        self.scope = scope
        self.upstream_receive = receive
        self.upstream_send = send
        self.limit = limit
        self.received = 0
        self.refused = False
        self.response_started = False
        self.answered = False
        self.open_stream = False

    async def receive(self) -> Any:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.upstream_receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.refused = True
                if not self.response_started:
                    self.answered = True
                    await send_error(
                        self.upstream_send, self.scope, 413, too_large_message(self.limit)
                    )
                # Quart stops the request's handler when its client disconnects.
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Any) -> None:
        if self.answered:
            return
        if not self.response_started and message["type"] == "http.response.start":
            self.response_started = True
            self.open_stream = count_open_stream(message)
        await self.upstream_send(message)

    def finish(self) -> None:
        """The app is done with the request: an SSE response is no longer open."""
        if self.open_stream:
            self.open_stream = False
            stream_closed()


class BodyLimits:
    """ASGI middleware enforcing each route's body limit and the query-string rules."""

    def __init__(self, app: Quart, asgi_app: ASGIFramework) -> None:
        self.app = app
        self.asgi_app = asgi_app
        self.settings: Settings = app.config["SETTINGS"]
        # The limits of paths that are a route's whole rule (no converters): at most one
        # per route and method, so bounded by the app. Matching against every rule took
        # ~8 µs a request, then Quart matches again.
        self.static_limits: dict[tuple[str, str], int] = {}

    def limit_for(self, scope: HTTPScope) -> int:
        """The matched route's limit; the default one for unknown routes (404 follows)."""
        key = (scope["method"], scope["path"])
        limit = self.static_limits.get(key)
        if limit is not None:
            return limit
        limit = self.settings.json_body_max_bytes
        try:
            rule, _ = self.app.url_map.bind("localhost").match(
                scope["path"], method=scope["method"], return_rule=True
            )
        except HTTPException:
            return limit
        limit_of: LimitOf | None = getattr(
            self.app.view_functions.get(rule.endpoint), LIMIT_ATTRIBUTE, None
        )
        if limit_of is not None:
            limit = limit_of(self.settings)
        limit = min(limit, self.settings.max_body_bytes)
        if not rule.arguments:
            # Routes are fixed once serving starts (Quart refuses new ones after the
            # first request), and so are the settings.
            self.static_limits[key] = limit
        return limit

    async def __call__(
        self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.asgi_app(scope, receive, send)
            return
        if b"%00" in scope.get("query_string", b""):
            await send_error(send, scope, 422, f"Query string: {NUL_MESSAGE}")
            return
        limit = self.limit_for(scope)
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_error(send, scope, 413, too_large_message(limit))
            return
        body = StreamedBody(scope, receive, send, limit)
        try:
            await self.asgi_app(scope, body.receive, body.send)
        finally:
            body.finish()


def media_json(settings: Settings) -> int:
    """JSON that may carry base64 images inline (chat messages, tasks, SwiftChat converse)."""
    return settings.json_media_body_max_bytes


def upload_file(settings: Settings) -> int:
    return settings.upload_image_max_bytes + MULTIPART_OVERHEAD


def avatar_file(settings: Settings) -> int:
    return settings.avatar_max_bytes + MULTIPART_OVERHEAD
