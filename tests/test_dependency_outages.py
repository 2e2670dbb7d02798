"""Outages of the SQL database and of Redis under a live web process are 503s naming the
dependency, with `Retry-After`, never a 500 (which a client cannot tell from a bug); the
keep-alive connection stays usable and the same process answers 200 again once the
dependency is back. Real faults: a private PostgreSQL stopped with `pg_ctl` and started
again, a private Redis killed and restarted, a SQLite file whose write lock another
process holds past the busy timeout."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backend.settings import Settings
from tests.support.live_server import LiveServer, start_hypercorn
from tests.support.own_database import migrate, sign_in
from tests.support.private_postgres import PrivatePostgres, private_services
from tests.support.private_redis import PrivateRedis

pytestmark = pytest.mark.sqlite_only

DATABASE_DOWN = "The database is unavailable; retry shortly"
DATABASE_BUSY = "The database is busy (locked by another writer); retry shortly"
DATABASE_FULL = "The database's disk is full; retry once space is freed"
REDIS_DOWN = "Redis (queues and streams) is unavailable; retry shortly"
RECOVERY_SECONDS = 20.0


@dataclass
class Stack:
    web: LiveServer
    postgres: PrivatePostgres
    redis: PrivateRedis


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with private_services(
        settings,
        tmp_path_factory.mktemp("outage-redis"),
        redis_prefix="outage",
        data_dir=tmp_path_factory.mktemp("outage-data"),
        admin_username="",
        admin_password="",
    ) as services:
        web = await start_hypercorn(services.settings, tmp_path_factory.mktemp("outage-logs"))
        try:
            yield Stack(web, services.postgres, services.redis)
        finally:
            web.server.stop()


def local_port(response: httpx.Response) -> int:
    """The client's port of the connection that carried `response`."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def assert_kept_or_closed_cleanly(response: httpx.Response, earlier: int) -> None:
    """`response` came whole (its caller checked it) on the connection that carried the
    request on port `earlier`, or the connection was closed cleanly after it: a 503 sent
    before a slow client's body arrived leaves that body unread, and h11 cannot reuse
    such a connection (the issue allows it: "usable, or closed cleanly"). What is never
    allowed, a connection left hanging, shows in the next request on the same client."""
    if response.headers.get("connection", "").lower() == "close":
        return
    try:
        port = local_port(response)
    except OSError:  # the client closed it after the whole response: a clean close
        return
    assert port == earlier, "the keep-alive connection was lost"


def assert_unavailable(response: httpx.Response, message: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    body = response.json()
    assert (body["code"], body["message"]) == (503, message), body


async def wait_until_served(client: httpx.AsyncClient, headers: dict[str, str]) -> float:
    """Seconds until `/users/me` answers 200 again."""
    started = time.monotonic()
    while (await client.get("/api/v1/users/me", headers=headers)).status_code != 200:
        assert time.monotonic() - started < RECOVERY_SECONDS, "not served again"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


def one_connection(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=30, limits=httpx.Limits(max_connections=1))


async def test_postgresql_stopped_is_a_503_and_served_again_once_started(stack: Stack) -> None:
    async with one_connection(stack.web.base_url) as client:
        headers = await sign_in(client)
        before = await client.get("/api/v1/users/me", headers=headers)
        assert before.status_code == 200, before.text

        stack.postgres.stop("fast")
        try:
            read = await client.get("/api/v1/users/me", headers=headers)
            assert_unavailable(read, DATABASE_DOWN)
            write = await client.post("/api/v1/datasets", json={"name": "x"}, headers=headers)
            assert_unavailable(write, DATABASE_DOWN)
            assert_kept_or_closed_cleanly(write, local_port(read))
            assert (await client.get("/healthz")).status_code == 200
        finally:
            stack.postgres.start()
        await wait_until_served(client, headers)
        created = await client.post("/api/v1/datasets", json={"name": "x"}, headers=headers)
        assert created.status_code == 201, created.text
    assert stack.web.server.process.poll() is None, stack.web.server.log_tail()
    assert "Internal server error" not in stack.web.server.log_path.read_text()


async def test_redis_killed_is_a_503_and_served_again_once_restarted(stack: Stack) -> None:
    async with one_connection(stack.web.base_url) as client:
        headers = await sign_in(client)
        stack.redis.kill()
        try:
            # Every bearer token is checked against the revocations Redis holds.
            read = await client.get("/api/v1/users/me", headers=headers)
            assert_unavailable(read, REDIS_DOWN)
            login = await client.post(
                "/api/v1/session/oauth2/token", data={"username": "nobody", "password": "x" * 12}
            )
            assert_unavailable(login, REDIS_DOWN)
            assert_kept_or_closed_cleanly(login, local_port(read))
        finally:
            await stack.redis.start()
        await wait_until_served(client, headers)
    assert stack.web.server.process.poll() is None, stack.web.server.log_tail()


def page_count(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA page_count").fetchone()[0]


async def test_sqlite_locked_is_a_503_and_full_a_507(
    settings: Settings, tmp_path: Path, redis_url: str
) -> None:
    """Locked past the busy timeout (another process holds the write lock): 503. Full
    (SQLite's own "database or disk is full", at a `max_page_count` 40 pages above the
    migrated size, as a full disk answers): 507, and reads still answer."""
    path = tmp_path / "locked.sqlite3"
    live = settings.model_copy(
        update={
            "database_url": f"sqlite://{path}?busy_timeout=300",
            "redis_prefix": f"locked-{uuid.uuid4().hex[:6]}",
            "data_dir": tmp_path / "data",
            "admin_username": "",
            "admin_password": "",
        }
    )
    await asyncio.to_thread(migrate, live)
    limit = page_count(path) + 40
    live = live.model_copy(update={"database_url": f"{live.database_url}&max_page_count={limit}"})
    web = await start_hypercorn(live, tmp_path)
    try:
        async with one_connection(web.base_url) as client:
            headers = await sign_in(client)
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            try:
                write = await client.post("/api/v1/datasets", json={"name": "x"}, headers=headers)
                assert_unavailable(write, DATABASE_BUSY)
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            created = await client.post("/api/v1/datasets", json={"name": "x"}, headers=headers)
            assert created.status_code == 201, created.text
            assert local_port(created) == local_port(write)

            for number in range(10):
                big = {"name": f"big-{number}", "description": "x" * 60_000}  # ~15 pages
                full = await client.post("/api/v1/datasets", json=big, headers=headers)
                if full.status_code != 201:
                    break
            assert full.status_code == 507, full.text
            assert full.headers["Retry-After"] == "60"
            assert full.json()["message"] == DATABASE_FULL
            assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
    finally:
        web.server.stop()
