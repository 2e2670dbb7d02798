"""Every documented route, swept: anonymous callers get an enveloped 401 wherever a
login is needed, and no route answers garbage with a 500."""

from __future__ import annotations

import re
from typing import Any

import pytest
from quart.testing import QuartClient

from tests.support.accounts import Account

pytestmark = pytest.mark.sqlite_only

# Streams that never end for a valid caller (the test client reads a response whole);
# tests/test_feed_live.py checks the feed's bad input.
ENDLESS_STREAMS = {("get", "/api/v1/events")}
# Routes anyone may call: logging in, registering, health, and the SwiftChat/RAGFlow
# routes are not among them.
PUBLIC = {
    ("post", "/api/v1/users"),
    ("post", "/api/v1/session/oauth2/token"),
    ("post", "/api/v1/session/refresh"),
    ("post", "/api/v1/session/logout"),
    ("post", "/api/v1/session/wechat/token"),
    ("post", "/api/v1/session/wechat/refresh"),
    ("get", "/healthz"),
    ("get", "/readyz"),
}
# The WebSocket answers its auth failure inside the socket (tests/test_ws.py).
NOT_HTTP = {"/api/v1/ws"}
METHODS = {"get", "post", "put", "patch", "delete"}


async def operations(client: QuartClient) -> list[tuple[str, str]]:
    paths: dict[str, Any] = (await (await client.get("/openapi.json")).get_json())["paths"]
    return sorted(
        (method, path)
        for path, item in paths.items()
        if path not in NOT_HTTP
        for method in item
        if method in METHODS
    )


# Well formed (a path id of another shape is a 404 before authentication,
# tests/test_hostile_ids.py) but naming nothing.
UNKNOWN = {"user_id": "9999", "code": "NO-SUCH-CODE", "platform": "x1"}


def concrete(path: str) -> str:
    """The path with every parameter filled with an id that exists nowhere."""
    return re.sub(r"\{(\w+)\}", lambda m: UNKNOWN.get(m.group(1), "0" * 32), path)


async def test_the_sweep_covers_the_api(client: QuartClient) -> None:
    found = await operations(client)
    assert len(found) >= 50
    assert ("post", "/api/v1/tasks") in found and ("post", "/api/converse") in found


async def test_protected_routes_refuse_anonymous_and_forged_callers(client: QuartClient) -> None:
    for method, path in await operations(client):
        if (method, path) in PUBLIC:
            continue
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            response = await client.open(concrete(path), method=method.upper(), headers=headers)
            assert response.status_code == 401, (method, path, headers, response.status_code)
            body = await response.get_json()
            assert body["code"] == 401 and body["message"], (method, path)


@pytest.mark.parametrize("caller", ["user", "admin"])
@pytest.mark.parametrize(
    "body",
    [None, "not json", "[]", '{"unexpected": true}', '{"name": 12, "question": []}'],
    ids=["empty", "text", "list", "unknown-field", "wrong-types"],
)
async def test_garbage_never_gets_a_500(
    client: QuartClient, user: Account, admin: Account, caller: str, body: str | None
) -> None:
    account = admin if caller == "admin" else user
    for method, path in await operations(client):
        if (method, path) in ENDLESS_STREAMS:
            continue
        response = await client.open(
            concrete(path),
            method=method.upper(),
            data=body,
            headers={**account.headers, "Content-Type": "application/json"},
        )
        assert response.status_code < 500, (method, path, body, response.status_code)
        if response.status_code >= 400:
            payload = await response.get_json()
            assert payload is not None and payload.get("message"), (method, path, body)
