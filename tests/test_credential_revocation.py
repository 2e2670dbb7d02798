"""Open WebSockets and SSE streams follow their credential's state, over real sockets.

A socket or event stream authorized once used to stay open after its API key was
deleted, its account disabled, its login logged out or its access token expired. Now
each is closed within moments (WebSocket: an `error` 401, then close code 4401; SSE: a
terminal `event: error` with code 401, then the end of the body), pushed through Redis
to the process holding the connection, and every socket command re-checks the credential.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.asyncio.client import ClientConnection

from backend.models import ApiKey, Task, User
from backend.models.tasks import TaskState
from backend.services import api_keys
from backend.services.tokens import ALGORITHM, new_login_id
from backend.settings import Settings
from tests.support.accounts import PASSWORD, Account, create_account
from tests.support.live_server import LiveServer
from tests.support.sse_client import Frame, bearer, frames

# Revocations are pushed; this bounds how long one may take to close a connection.
CLOSE_WITHIN_SECONDS = 5.0
RECEIVE_TIMEOUT = 10.0
KEYS = "/api/v1/users/me/api-keys"


@pytest.fixture
async def redis(live_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(live_settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def http(live_processes: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_processes.base_url, timeout=20) as client:
        yield client


async def new_api_key(http: httpx.AsyncClient, account: Account) -> tuple[str, str]:
    response = await http.post(KEYS, json={"name": "socket"}, headers=account.headers)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    return data["id"], data["key"]


async def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT))


@asynccontextmanager
async def open_socket(server: LiveServer, token: str) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(f"{server.ws_url}?access_token={token}") as ws:
        assert (await receive(ws))["type"] == "ready"
        yield ws


async def closed_unauthorized(ws: ClientConnection, within: float = CLOSE_WITHIN_SECONDS) -> str:
    """Waits for the `error` 401 and the 4401 close; returns the message."""
    started = time.monotonic()
    reply = json.loads(await asyncio.wait_for(ws.recv(), within))
    assert reply["type"] == "error" and reply["code"] == 401, reply
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), within)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert time.monotonic() - started < within
    return reply["message"]


class EventStream:
    """An open SSE response read in the background, frame by frame."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        try:
            async for frame in frames(self.response):
                await self.frames.put(frame)
        except httpx.HTTPError:
            pass
        await self.frames.put(None)

    async def ended_unauthorized(self, within: float = CLOSE_WITHIN_SECONDS) -> str:
        """Skips heartbeats to the terminal `error` 401, then expects the body to end."""
        deadline = time.monotonic() + within
        while True:
            frame = await asyncio.wait_for(self.frames.get(), deadline - time.monotonic())
            assert frame is not None, "the stream ended without an error event"
            if frame.event is not None:
                break
        assert frame.event == "error" and frame.data["code"] == "unauthorized", frame
        assert frame.data["status"] == 401
        ending = await asyncio.wait_for(self.frames.get(), deadline - time.monotonic())
        assert ending is None, f"the stream went on after its error event: {ending}"
        return frame.data["message"]


@asynccontextmanager
async def open_stream(http: httpx.AsyncClient, path: str, token: str) -> AsyncIterator[EventStream]:
    async with http.stream("GET", path, headers=bearer(token)) as response:
        assert response.status_code == 200, await response.aread()
        stream = EventStream(response)
        # The opening `retry:` frame: the stream is being served.
        opening = await asyncio.wait_for(stream.frames.get(), RECEIVE_TIMEOUT)
        assert opening is not None and opening.retry is not None
        try:
            yield stream
        finally:
            stream.reader.cancel()
            await asyncio.gather(stream.reader, return_exceptions=True)


async def still_open(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "ping"}))
    assert (await receive(ws))["type"] == "pong"


async def test_deleting_an_api_key_closes_its_sockets_and_streams(
    live_processes: LiveServer, http: httpx.AsyncClient, live_user: Account
) -> None:
    key_id, key = await new_api_key(http, live_user)
    task = await Task.create(user_id=live_user.id, model="test-model", state=TaskState.RUNNING)
    async with (
        open_socket(live_processes, key) as keyed,
        open_socket(live_processes, live_user.access_token) as other,
        open_stream(http, "/api/v1/events", key) as feed,
        open_stream(http, f"/api/v1/tasks/{task.id}/stream", key) as answer,
    ):
        deleted = await http.delete(f"{KEYS}/{key_id}", headers=live_user.headers)
        assert deleted.status_code == 200
        assert "revoked API key" in await closed_unauthorized(keyed)
        assert "revoked API key" in await feed.ended_unauthorized()
        assert "revoked API key" in await answer.ended_unauthorized()
        # The same user's other credential is not concerned.
        await still_open(other)
    again = await http.get("/api/v1/events", headers=bearer(key))
    assert again.status_code == 401


async def test_disabling_the_account_closes_every_connection_of_it(
    live_processes: LiveServer, http: httpx.AsyncClient, live_settings: Settings
) -> None:
    admin = await create_account(live_settings, admin=True, password=False)
    user = await create_account(live_settings, password=False)
    _, key = await new_api_key(http, user)
    async with (
        open_socket(live_processes, user.access_token) as by_token,
        open_stream(http, "/api/v1/events", key) as by_key,
        open_socket(live_processes, admin.access_token) as admins,
    ):
        disabled = await http.post(f"/api/v1/users/{user.id}/disable", headers=admin.headers)
        assert disabled.status_code == 200
        assert "disabled" in await closed_unauthorized(by_token)
        assert "disabled" in await by_key.ended_unauthorized()
        await still_open(admins)


async def password_login(http: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    response = await http.post(
        "/api/v1/session/oauth2/token",
        data={"username": account.username, "password": PASSWORD},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_logout_closes_that_logins_connections_and_refuses_its_token(
    live_processes: LiveServer, http: httpx.AsyncClient, live_settings: Settings
) -> None:
    account = await create_account(live_settings)
    first, second = await password_login(http, account), await password_login(http, account)
    async with (
        open_socket(live_processes, first["access_token"]) as logged_out,
        open_stream(http, "/api/v1/events", first["access_token"]) as feed,
        open_socket(live_processes, second["access_token"]) as other_login,
    ):
        response = await http.post(
            "/api/v1/session/logout", json={"refresh_token": first["refresh_token"]}
        )
        assert response.status_code == 200
        assert "Logged out" in await closed_unauthorized(logged_out)
        assert "Logged out" in await feed.ended_unauthorized()
        await still_open(other_login)
    me = await http.get("/api/v1/users/me", headers=bearer(first["access_token"]))
    assert me.status_code == 401 and "Logged out" in me.json()["message"]
    assert (await http.get("/api/v1/users/me", headers=bearer(second["access_token"]))).is_success


def short_lived_token(settings: Settings, account: Account, seconds: float) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(account.id),
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(seconds=seconds),
        "jti": new_login_id(),
        "sid": new_login_id(),
    }
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)


async def test_an_expiring_access_token_closes_its_connections_on_time(
    live_processes: LiveServer, http: httpx.AsyncClient, live_settings: Settings, live_user: Account
) -> None:
    token = short_lived_token(live_settings, live_user, seconds=3)
    async with (
        open_socket(live_processes, token) as ws,
        open_stream(http, "/api/v1/events", token) as feed,
    ):
        await still_open(ws)
        assert "expired" in await closed_unauthorized(ws, within=3 + CLOSE_WITHIN_SECONDS)
        assert "expired" in await feed.ended_unauthorized(within=CLOSE_WITHIN_SECONDS)


async def test_a_socket_re_authenticated_with_a_fresh_token_outlives_the_first(
    live_processes: LiveServer, live_settings: Settings, live_user: Account
) -> None:
    other = await create_account(live_settings, password=False)
    async with open_socket(live_processes, short_lived_token(live_settings, live_user, 3)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": other.access_token, "ref": "x"}))
        refused = await receive(ws)
        assert refused["type"] == "error" and refused["code"] == 403 and refused["ref"] == "x"
        # A token that does not authenticate is refused; the socket keeps its credential.
        await ws.send(json.dumps({"type": "auth", "token": "not-a-token", "ref": "z"}))
        invalid = await receive(ws)
        assert invalid["type"] == "error" and invalid["code"] == 401 and invalid["ref"] == "z"
        await ws.send(json.dumps({"type": "auth", "token": live_user.access_token, "ref": "y"}))
        assert await receive(ws) == {"type": "ready", "user_id": live_user.id, "ref": "y"}
        await asyncio.sleep(4)
        await still_open(ws)


async def test_every_socket_command_checks_the_credential_even_without_the_broadcast(
    live_processes: LiveServer, http: httpx.AsyncClient, live_user: Account
) -> None:
    """A revocation whose announcement is lost (written straight to SQL here) still stops
    the socket at its next command."""
    key_id, key = await new_api_key(http, live_user)
    async with open_socket(live_processes, key) as ws:
        await still_open(ws)
        await ApiKey.filter(id=key_id).update(revoked_at=datetime.now(UTC))
        await ws.send(json.dumps({"type": "ping"}))
        assert "revoked API key" in await closed_unauthorized(ws)


async def test_a_revocation_in_another_process_closes_the_ragflow_socket(
    live_processes: LiveServer,
    http: httpx.AsyncClient,
    live_settings: Settings,
    live_user: Account,
    redis: aioredis.Redis,
) -> None:
    """The key is revoked by this test process, not the server: only Redis tells it."""
    key_id, key = await new_api_key(http, live_user)
    url = f"ws://127.0.0.1:{live_processes.port}/v1/ws/chat"
    async with websockets.connect(url, additional_headers=bearer(key)) as ws:
        # An invalid question's answer: the socket is authenticated and serving.
        await ws.send("{}")
        assert json.loads(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT))["code"] == 422
        user = await User.get(id=live_user.id)
        await api_keys.revoke(user, key_id, redis=redis, settings=live_settings)
        frame = json.loads(await asyncio.wait_for(ws.recv(), CLOSE_WITHIN_SECONDS))
        assert frame["code"] == 401 and "revoked API key" in frame["message"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), CLOSE_WITHIN_SECONDS)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_revocation_announced_while_the_channel_was_down_is_caught_up(
    live_processes: LiveServer,
    http: httpx.AsyncClient,
    live_user: Account,
    redis: aioredis.Redis,
) -> None:
    """The announcement is lost (Redis drops the subscriber connections, and the key is
    revoked in SQL meanwhile): on re-subscribing the server re-checks every open
    connection's credential and closes this idle one without any command from it."""
    key_id, key = await new_api_key(http, live_user)
    async with open_socket(live_processes, key) as ws:
        await ApiKey.filter(id=key_id).update(revoked_at=datetime.now(UTC))
        assert await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
        assert "revoked API key" in await closed_unauthorized(ws)
