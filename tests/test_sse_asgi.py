"""The SSE response through the app's real ASGI entry point (where Quart applies
RESPONSE_TIMEOUT and turns a client disconnect into cancelling the response)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from quart import Quart

from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import DoneEvent, TokenEvent
from tests.support.accounts import Account, create_account


class AsgiCall:
    """One request through `app(scope, receive, send)`; `disconnect()` hangs up."""

    def __init__(self, app: Quart, path: str, token: str) -> None:
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test"), (b"authorization", f"Bearer {token}".encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("test", 80),
            "extensions": {},
        }
        self.app = app
        self.messages: list[dict[str, Any]] = []
        self.body_received = asyncio.Event()
        self.hang_up = asyncio.Event()
        self.requested = False

    async def receive(self) -> dict[str, Any]:
        if not self.requested:
            self.requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message.get("body"):
            self.body_received.set()

    def run(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.app(self.scope, self.receive, self.send))

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def body(self) -> str:
        return b"".join(m.get("body", b"") for m in self.messages[1:]).decode()


@pytest.fixture
async def account(app: Quart, settings: Settings) -> Account:
    return await create_account(settings)


@pytest.fixture
def short_response_timeout(app: Quart) -> AsyncIterator[None]:
    previous = app.config["RESPONSE_TIMEOUT"]
    app.config["RESPONSE_TIMEOUT"] = 0.3
    yield
    app.config["RESPONSE_TIMEOUT"] = previous


async def test_stream_outlives_a_short_response_timeout(
    app: Quart,
    account: Account,
    redis: aioredis.Redis,
    settings: Settings,
    short_response_timeout: None,
) -> None:
    task = await Task.create(user_id=account.id, model="m", state=TaskState.RUNNING)
    stream = TaskStream.for_task(redis, settings, task.id)
    call = AsgiCall(app, f"/api/v1/tasks/{task.id}/stream", account.access_token)
    running = call.run()
    for i in range(6):
        await stream.append(TokenEvent(delta=str(i)))
        await asyncio.sleep(0.2)
    await stream.append(DoneEvent(message_id=None, prompt_tokens=0, completion_tokens=6, cost=0))
    await asyncio.wait_for(running, 5)
    assert call.status == 200
    assert call.body.count("event: token") == 6
    assert call.body.rstrip().split("\n\n")[-1].split("\n")[1] == "event: done"


async def test_disconnect_stops_delivery_not_generation_and_frees_the_lease(
    app: Quart, account: Account, redis: aioredis.Redis, settings: Settings
) -> None:
    task = await Task.create(user_id=account.id, model="m", state=TaskState.RUNNING)
    stream = TaskStream.for_task(redis, settings, task.id)
    first = await stream.append(TokenEvent(delta="a"))
    call = AsgiCall(app, f"/api/v1/tasks/{task.id}/stream", account.access_token)
    running = call.run()
    await asyncio.wait_for(call.body_received.wait(), 5)
    assert await redis.exists(stream.lease_key)
    call.hang_up.set()
    await asyncio.wait_for(running, 5)
    assert not await redis.exists(stream.lease_key)
    assert not await stream.is_consumed()
    later = await stream.append(TokenEvent(delta="b"))
    assert [e.id for e in await stream.read_after()] == [first, later]
