"""The per-request log line (backend/app.py) as operators read it: one JSON line per
request at INFO with the request id, method, path, status, duration and user, none above
INFO (issue 16, fifth pass: its fields are gathered only for a line that is written), and
the X-Request-ID header either way."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from quart.testing import QuartClient

from backend.observability import JsonFormatter
from tests.support.accounts import Account


@contextmanager
def request_lines(level: int) -> Iterator[io.StringIO]:
    """The `sluice.http` logger at `level`, its lines formatted as a deployment's are."""
    logger = logging.getLogger("sluice.http")
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(JsonFormatter())
    previous = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield written
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_at_info_each_request_writes_one_line_with_its_fields(
    client: QuartClient, user: Account
) -> None:
    headers = {**user.headers, "X-Request-ID": "trace-me.1"}
    with request_lines(logging.INFO) as written:
        response = await client.get("/api/v1/users/me", headers=headers)
        anonymous = await client.get("/api/v1/users/me")
    assert response.headers["X-Request-ID"] == "trace-me.1"
    first, second = [json.loads(line) for line in written.getvalue().splitlines()]
    assert set(first) == {
        "ts",
        "level",
        "logger",
        "msg",
        "request_id",
        "method",
        "path",
        "status",
        "duration_ms",
        "user_id",
    }
    assert (first["level"], first["logger"], first["msg"]) == ("INFO", "sluice.http", "request")
    assert first["request_id"] == "trace-me.1"
    assert (first["method"], first["path"], first["status"]) == ("GET", "/api/v1/users/me", 200)
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["user_id"] == user.id
    assert second["status"] == 401 and second["user_id"] is None
    assert second["request_id"] == anonymous.headers["X-Request-ID"]


async def test_above_info_no_line_is_written_and_the_request_id_still_goes_back(
    client: QuartClient, user: Account
) -> None:
    with request_lines(logging.WARNING) as written:
        response = await client.get("/api/v1/users/me", headers=user.headers)
    assert response.status_code == 200
    assert len(response.headers["X-Request-ID"]) == 32
    assert written.getvalue() == ""
