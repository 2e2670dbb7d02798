"""Which limit a request's body gets, as the middleware looks it up (issue 16, fifth
pass): a static route's limit is remembered, since matching every rule cost ~8 µs a
request before Quart matched again (bench/bench_request_paths.py); a route with ids in
its path, an unknown path and a wrong method are matched each time and never remembered,
so what is kept is bounded by the app's routes, not by the paths clients send."""

from __future__ import annotations

import uuid

from quart import Quart

from backend.http.body_limits import BodyLimits, media_json
from backend.settings import Settings


def body_limits(app: Quart) -> BodyLimits:
    wrapped = app.asgi_app
    while not isinstance(wrapped, BodyLimits):
        wrapped = wrapped.app  # type: ignore[attr-defined]
    return wrapped


def scope(method: str, path: str) -> dict:
    return {"type": "http", "method": method, "path": path}


async def test_a_static_route_s_limit_is_remembered(app: Quart, settings: Settings) -> None:
    limits = body_limits(app)
    media = min(media_json(settings), settings.max_body_bytes)
    assert limits.limit_for(scope("POST", "/api/v1/tasks")) == media
    assert limits.static_limits[("POST", "/api/v1/tasks")] == media
    assert limits.limit_for(scope("POST", "/api/v1/tasks")) == media
    small = min(settings.json_body_max_bytes, settings.max_body_bytes)
    assert limits.limit_for(scope("GET", "/api/v1/users/me")) == small
    assert limits.static_limits[("GET", "/api/v1/users/me")] == small


async def test_paths_with_ids_unknown_paths_and_wrong_methods_are_not_remembered(
    app: Quart, settings: Settings
) -> None:
    limits = body_limits(app)
    media = min(media_json(settings), settings.max_body_bytes)
    default = min(settings.json_body_max_bytes, settings.max_body_bytes)
    before = dict(limits.static_limits)
    for _ in range(3):
        chat, session = uuid.uuid4().hex, uuid.uuid4().hex
        path = f"/api/v1/chats/{chat}/sessions/{session}/messages"
        assert limits.limit_for(scope("POST", path)) == media  # the route's own limit
        assert limits.limit_for(scope("GET", f"/api/v1/tasks/{chat}")) == default
        assert limits.limit_for(scope("POST", f"/no/such/{chat}")) == default
    assert limits.limit_for(scope("DELETE", "/api/v1/tasks")) == default  # 405 follows
    assert limits.static_limits == before
