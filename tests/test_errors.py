"""The error envelope across the whole app: every failure is `{"code", "message"}`."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from quart import Quart
from quart.testing import QuartClient

from backend.app import create_app
from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.live_server import free_port

SECRET_DETAIL = "db password is hunter2"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def envelope(response, status: int) -> dict:
    assert response.status_code == status
    body = await response.get_json()
    assert body["code"] == status
    assert body["message"]
    return body


async def test_validation_error_is_422_naming_the_field(client: QuartClient):
    response = await client.post("/api/v1/users", json={"username": "ok-name", "password": 1})
    body = await envelope(response, 422)
    assert "password" in body["message"]
    assert "username" not in body["message"]


@pytest.mark.parametrize("payload", ["{not json", '{"username": "abc",', "", "[1, 2"])
async def test_malformed_json_is_a_4xx_envelope(client: QuartClient, payload: str):
    response = await client.post(
        "/api/v1/users", data=payload, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422)
    await envelope(response, response.status_code)


async def test_json_of_the_wrong_shape_is_422(client: QuartClient, user: Account):
    response = await client.patch("/api/v1/users/me", json=["nickname"], headers=user.headers)
    await envelope(response, 422)


@pytest.fixture
async def small_body_limit(app: Quart) -> AsyncIterator[int]:
    previous = app.config["MAX_CONTENT_LENGTH"]
    app.config["MAX_CONTENT_LENGTH"] = 1_000
    yield 1_000
    app.config["MAX_CONTENT_LENGTH"] = previous


async def test_oversized_body_is_413(client: QuartClient, small_body_limit: int):
    payload = json.dumps({"username": "abc", "password": "x" * (small_body_limit * 2)})
    response = await client.post(
        "/api/v1/users", data=payload, headers={"Content-Type": "application/json"}
    )
    body = await envelope(response, 413)
    assert str(small_body_limit) in body["message"]


async def test_unknown_route_and_method_are_enveloped(client: QuartClient):
    missing = await envelope(await client.get("/api/v1/no-such-thing"), 404)
    assert "/docs" in missing["message"]
    await envelope(await client.delete("/api/v1/users/me"), 405)


async def test_auth_errors_carry_the_request_id(client: QuartClient):
    response = await client.get("/api/v1/users/me", headers={"X-Request-ID": "req-abc-123"})
    body = await envelope(response, 401)
    assert body["request_id"] == "req-abc-123"
    assert response.headers["X-Request-ID"] == "req-abc-123"


async def test_unexpected_exception_is_500_with_request_id_and_no_internals(settings: Settings):
    app = create_app(settings)

    @app.get("/boom")
    async def boom():
        raise RuntimeError(SECRET_DETAIL)

    collected = Collect()
    logging.getLogger("sluice.http").addHandler(collected)
    try:
        response = await app.test_client().get("/boom")
    finally:
        logging.getLogger("sluice.http").removeHandler(collected)
    body = await envelope(response, 500)
    text = await response.get_data(as_text=True)
    assert SECRET_DETAIL not in text
    assert "RuntimeError" not in text
    assert "Traceback" not in text
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "request_id" in body["message"]
    logged = [r for r in collected.records if r.exc_info]
    assert logged, "the traceback must be logged"
    assert SECRET_DETAIL in str(logged[0].exc_info[1])


async def test_readyz_is_ready_with_sql_and_redis(client: QuartClient):
    response = await client.get("/readyz")
    assert response.status_code == 200


async def test_readyz_is_503_naming_redis_when_redis_is_down(app: Quart, client: QuartClient):
    working = app.config["REDIS"]
    broken = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    app.config["REDIS"] = broken
    try:
        response = await client.get("/readyz")
    finally:
        app.config["REDIS"] = working
        await broken.aclose()
    body = await envelope(response, 503)
    assert "redis" in body["message"]
    assert "sql" not in body["message"]


class UnreachableDatabase:
    """What Tortoise's connection handler gives when the SQL server has gone away."""

    def get(self, name: str) -> UnreachableDatabase:
        return self

    async def execute_query(self, sql: str) -> None:
        raise ConnectionRefusedError("connection refused")


async def test_readyz_is_503_naming_sql_when_the_database_is_down(
    client: QuartClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("backend.services.readiness.connections", UnreachableDatabase())
    body = await envelope(await client.get("/readyz"), 503)
    assert "sql" in body["message"]
    assert "redis" not in body["message"]
