"""Hostile input is a clear 4xx with the envelope, never a 500: bodies that are not UTF-8,
JSON nested a thousand deep or made of a million values, NUL in text, hostile request
ids; over HTTP and the WebSocket alike."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator

import pytest
import websockets
from quart import Quart
from quart.testing import QuartClient
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE, DataSource

from backend.http.json_bodies import JSON_MAX_DEPTH, JSON_MAX_ITEMS
from tests.support.accounts import Account
from tests.support.live_server import LiveServer

JSON = {"Content-Type": "application/json"}
# Values that pass each path converter's format check, so the request reaches its route.
PATH_VALUES = {"PublicIdConverter": "0" * 32, "UserIdConverter": "1", "CodeConverter": "ABCD1234"}


def json_routes(app: Quart) -> Iterator[tuple[str, str]]:
    """(method, path) of every route that validates a JSON body."""
    adapter = app.url_map.bind("localhost")
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        schema = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
        if schema is None or schema[1] != DataSource.JSON:
            continue
        values = {
            name: PATH_VALUES.get(type(converter).__name__, "x")
            for name, converter in rule._converters.items()
        }
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, adapter.build(rule.endpoint, values, method=method)


async def envelope(response, status: int) -> dict:
    body = await response.get_json()
    assert response.status_code == status, body
    assert body["code"] == status and body["message"]
    return body


async def test_every_json_route_answers_invalid_utf8_with_a_400(
    app: Quart, client: QuartClient, root: Account
) -> None:
    routes = list(json_routes(app))
    assert len(routes) >= 20
    for method, path in routes:
        response = await client.open(
            path, method=method, data=b'{"name": "caf\xe9 \xff"}', headers={**JSON, **root.headers}
        )
        body = await envelope(response, 400)
        assert "UTF-8" in body["message"], (method, path)


async def test_every_json_route_refuses_another_charset_with_a_415(
    app: Quart, client: QuartClient, root: Account
) -> None:
    for method, path in json_routes(app):
        response = await client.open(
            path,
            method=method,
            data='{"name": "x"}'.encode("utf-16"),
            headers={"Content-Type": "application/json; charset=utf-16", **root.headers},
        )
        body = await envelope(response, 415)
        assert "UTF-8" in body["message"], (method, path)


async def test_invalid_utf8_without_login_is_a_400(client: QuartClient) -> None:
    response = await client.post("/api/v1/users", data=b'{"username": "\xc3\x28"}', headers=JSON)
    await envelope(response, 400)
    lone_surrogate = b'{"username": "ab\\ud800c", "password": "long enough"}'
    response = await client.post("/api/v1/users", data=lone_surrogate, headers=JSON)
    await envelope(response, 400)


async def test_a_form_that_is_not_utf8_is_a_400(client: QuartClient) -> None:
    response = await client.post(
        "/api/v1/session/oauth2/token",
        data=b"username=caf\xe9&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await envelope(response, 400)


def nested(depth: int) -> str:
    return '{"username": "deep", "password": "long enough", "x": ' + "[" * depth + "]" * depth + "}"


async def test_json_nested_a_thousand_deep_is_a_400(client: QuartClient) -> None:
    for depth in (1_000, 20_000):
        response = await client.post("/api/v1/users", data=nested(depth), headers=JSON)
        body = await envelope(response, 400)
        assert str(JSON_MAX_DEPTH) in body["message"]


async def test_json_within_the_depth_limit_reaches_the_route(client: QuartClient) -> None:
    response = await client.post("/api/v1/users", data=nested(JSON_MAX_DEPTH - 1), headers=JSON)
    # The pad is ignored; the short password is what the route objects to.
    assert response.status_code in (201, 409, 422)


async def test_json_of_too_many_values_is_a_413_before_parsing(client: QuartClient) -> None:
    pad = ",".join(["0"] * (JSON_MAX_ITEMS + 1))
    data = '{"username": "many", "password": "long enough", "x": [' + pad + "]}"
    response = await client.post("/api/v1/users", data=data, headers=JSON)
    body = await envelope(response, 413)
    assert str(JSON_MAX_ITEMS) in body["message"]


async def test_commas_inside_strings_are_not_values(client: QuartClient, user: Account) -> None:
    """A nickname of commas is one value, not a hundred thousand."""
    nickname = "," * 60
    text = json.dumps({"nickname": nickname, "email": None, "x": ["," * (JSON_MAX_ITEMS + 1)]})
    response = await client.patch("/api/v1/users/me", data=text, headers={**JSON, **user.headers})
    assert (await envelope_ok(response))["nickname"] == nickname


async def envelope_ok(response) -> dict:
    body = await response.get_json()
    assert response.status_code == 200, body
    return body["data"]


async def test_nul_in_a_json_text_field_is_a_422(client: QuartClient, user: Account) -> None:
    before = await envelope_ok(await client.get("/api/v1/users/me", headers=user.headers))
    response = await client.patch(
        "/api/v1/users/me", data='{"nickname": "evil\\u0000"}', headers={**JSON, **user.headers}
    )
    body = await envelope(response, 422)
    assert "NUL" in body["message"]
    after = await envelope_ok(await client.get("/api/v1/users/me", headers=user.headers))
    assert after["nickname"] == before["nickname"]
    # An escaped backslash before "u0000" is the text \u0000, not a NUL: accepted.
    response = await client.patch(
        "/api/v1/users/me", data='{"nickname": "a\\\\u0000"}', headers={**JSON, **user.headers}
    )
    assert (await envelope_ok(response))["nickname"] == "a\\u0000"


async def test_nul_in_a_query_string_is_a_422(client: QuartClient, root: Account) -> None:
    """The admin search `?username=%00` used to match every user."""
    response = await client.get("/api/v1/users?username=%00", headers=root.headers)
    body = await envelope(response, 422)
    assert "NUL" in body["message"]
    assert (
        await client.get("/api/v1/users?username=%2500", headers=root.headers)
    ).status_code == 200


async def test_nul_in_a_login_form_is_a_422(client: QuartClient, user: Account) -> None:
    response = await client.post(
        "/api/v1/session/oauth2/token",
        form={"username": user.username + "\x00", "password": user.password},
    )
    await envelope(response, 422)


@pytest.fixture
def request_log(app: Quart) -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("sluice.http")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.setLevel(previous)
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    "hostile",
    ["evil\x01\x7f", "a" * 129, "x" * 60_000, "id with spaces", "naïve", ""],
    ids=["control", "129", "60KB", "spaces", "non-ascii", "empty"],
)
async def test_a_hostile_request_id_is_replaced(
    client: QuartClient, request_log: list[logging.LogRecord], hostile: str
) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": hostile})
    echoed = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", echoed)
    assert [r.request_id for r in request_log if hasattr(r, "request_id")] in ([], [echoed])


async def test_a_good_request_id_is_echoed(client: QuartClient) -> None:
    good = "req-42.a:B_9" + "x" * 116
    response = await client.get("/healthz", headers={"X-Request-ID": good})
    assert response.headers["X-Request-ID"] == good
    refused = await client.post(
        "/api/v1/users", data=b"x" * (2 * 1024 * 1024), headers={**JSON, "X-Request-ID": "\x01"}
    )
    assert refused.status_code == 413
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["X-Request-ID"])


@pytest.fixture
async def socket(live_processes: LiveServer, live_user: Account) -> AsyncIterator:
    url = f"{live_processes.ws_url}?access_token={live_user.access_token}"
    async with websockets.connect(url, max_size=None) as connection:
        assert json.loads(await connection.recv())["type"] == "ready"
        yield connection


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('{"type": "ping", "x": ' + "[" * 1_000 + "]" * 1_000 + "}", 400),
        ('{"type": "ping", "x": [' + ",".join(["0"] * (JSON_MAX_ITEMS + 1)) + "]}", 413),
        ('{"type": "ping", "ref": "a\\u0000"}', 422),
        (b'{"type": "ping", "ref": "\xff"}', 400),
    ],
    ids=["deep", "many", "nul", "not-utf8"],
)
async def test_hostile_websocket_messages_get_an_error_and_the_socket_stays_open(
    socket, raw: str | bytes, code: int
) -> None:
    await socket.send(raw)
    reply = json.loads(await socket.recv())
    assert reply["type"] == "error" and reply["code"] == code, reply
    await socket.send('{"type": "ping", "ref": "after"}')
    assert json.loads(await socket.recv()) == {"type": "pong", "ref": "after"}
