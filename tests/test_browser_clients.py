"""What browsers, phones and mini-programs need from a server with CORS_ORIGINS set, over
real sockets: WebSocket origin checks for browsers only, the task id readable by a
cross-origin page that streams with fetch(), and `retry:` for EventSource."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.exceptions import InvalidStatus

from backend.http.browser_origins import browser_origin_allowed
from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import DoneEvent, TokenEvent
from tests.support.accounts import Account
from tests.support.live_server import (
    FAST_TOKENS,
    LiveServer,
    ServerProcess,
    create_chat_session,
    start_hypercorn,
)
from tests.support.sse_client import Frame, bearer, frames, parse_frame

APP_ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
async def cors_server(live_settings: Settings, live_log_dir: Path) -> AsyncIterator[LiveServer]:
    server = await start_hypercorn(
        live_settings.model_copy(update={"cors_origins": [APP_ORIGIN]}), live_log_dir
    )
    yield server
    server.server.stop()


@pytest.fixture
async def redis(live_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(live_settings.redis_url)
    yield client
    await client.aclose()


async def ready_message(server: LiveServer, account: Account, origin: str | None) -> dict:
    url = f"{server.ws_url}?access_token={account.access_token}"
    async with websockets.connect(url, origin=origin) as ws:  # type: ignore[arg-type]
        return json.loads(await ws.recv())


@pytest.mark.parametrize(
    "origin",
    [
        None,  # a native app, a WeChat mini-program, a server
        APP_ORIGIN,
        "same-origin",  # a page served by Sluice itself
    ],
)
async def test_websocket_accepts_apps_and_allowed_pages(
    cors_server: LiveServer, live_user: Account, origin: str | None
) -> None:
    if origin == "same-origin":
        origin = f"http://127.0.0.1:{cors_server.port}"
    ready = await ready_message(cors_server, live_user, origin)
    assert ready["type"] == "ready" and ready["user_id"] == live_user.id


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost:1", "null"])
async def test_websocket_refuses_other_pages(
    cors_server: LiveServer, live_user: Account, origin: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await ready_message(cors_server, live_user, origin)
    assert refused.value.response.status_code == 403
    body = json.loads(refused.value.response.body)
    assert body["code"] == 403 and "CORS_ORIGINS" in body["message"]


def test_same_origin_compares_host_and_port_with_default_ports() -> None:
    allowed = [APP_ORIGIN]
    assert browser_origin_allowed("https://chat.example", "chat.example", allowed)
    assert browser_origin_allowed("https://chat.example", "chat.example:443", allowed)
    assert browser_origin_allowed("http://[::1]:8000", "[::1]:8000", allowed)
    assert not browser_origin_allowed("http://chat.example:8080", "chat.example", allowed)
    assert not browser_origin_allowed("http://chat.example", "chat.example.evil", allowed)
    assert not browser_origin_allowed("http://chat.example:x", "chat.example", allowed)
    assert browser_origin_allowed("https://any.example", "chat.example", [])


async def test_cross_origin_page_reads_the_task_id_of_the_stream_it_started(
    cors_server: LiveServer,
    chat_worker: ServerProcess,
    live_settings: Settings,
    live_user: Account,
) -> None:
    session = await create_chat_session(live_user)
    headers = {**bearer(live_user.access_token), "Origin": APP_ORIGIN}
    body = {"session_id": session.id, "question": "hi", "stream": True}
    async with (
        httpx.AsyncClient(base_url=cors_server.base_url, timeout=10) as http,
        http.stream("POST", "/api/v1/tasks", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
        exposed = response.headers["Access-Control-Expose-Headers"].lower().split(",")
        assert "x-task-id" in {name.strip() for name in exposed}
        received = [frame async for frame in frames(response)]
    opening = received[0]
    assert opening.event == "task" and opening.id is None
    assert opening.retry == round(live_settings.sse_retry_seconds * 1000)
    assert opening.data == {"task_id": response.headers["X-Task-ID"]}
    entries = [f for f in received if f.id is not None]
    assert [f.event for f in entries][-2:] == ["usage", "done"]
    text = "".join(f.data["delta"] for f in entries if f.event == "token")
    assert text == "".join(f"tok{i} " for i in range(FAST_TOKENS))
    assert all(f.event != "task" for f in received[1:])
    # The announcement is not part of the stream: it is still consumed once.
    task_id = opening.data["task_id"]
    async with httpx.AsyncClient(base_url=cors_server.base_url, timeout=10) as http:
        again = await http.get(f"/api/v1/tasks/{task_id}/stream", headers=headers)
        assert again.status_code == 410
        resumed = await http.get(
            f"/api/v1/tasks/{task_id}/stream",
            headers={**headers, "Last-Event-ID": entries[-3].id},
        )
    assert resumed.status_code == 200
    assert [f.event for f in parse(resumed.text) if f.event] == ["usage", "done"]


def parse(body: str) -> list[Frame]:
    return [parse_frame(block) for block in body.split("\n\n") if block]


async def test_every_task_stream_tells_eventsource_when_to_reconnect(
    live_processes: LiveServer,
    redis: aioredis.Redis,
    live_settings: Settings,
    live_user: Account,
) -> None:
    task = await Task.create(user_id=live_user.id, model="m", state=TaskState.SUCCEEDED)
    stream = TaskStream.for_task(redis, live_settings, task.id)
    first = await stream.append(TokenEvent(delta="a"))
    await stream.append(DoneEvent(message_id="m", prompt_tokens=1, completion_tokens=1, cost=0))
    async with httpx.AsyncClient(base_url=live_processes.base_url, timeout=10) as http:
        for resume in ({}, {"Last-Event-ID": first}):
            response = await http.get(
                f"/api/v1/tasks/{task.id}/stream",
                headers={**bearer(live_user.access_token), **resume},
            )
            assert response.status_code == 200
            opening = parse(response.text)[0]
            assert opening.retry == round(live_settings.sse_retry_seconds * 1000)
            assert opening.event is None and opening.id is None
