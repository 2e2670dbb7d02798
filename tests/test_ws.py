"""The WebSocket `/api/v1/ws` over real sockets (Hypercorn subprocess, real Redis and SQL)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.asyncio.client import ClientConnection

from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import CancelledEvent, DoneEvent, ErrorEvent, TokenEvent
from tests.support.accounts import Account
from tests.support.live_server import LiveServer
from tests.support.sse_client import bearer, events

RECEIVE_TIMEOUT = 10
# Well formed (32 hex characters) but naming nothing; malformed ids are tested in
# test_hostile_ids.py.
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def redis(live_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(live_settings.redis_url)
    yield client
    await client.aclose()


async def new_task(account: Account, state: TaskState = TaskState.RUNNING) -> Task:
    return await Task.create(user_id=account.id, model="test-model", state=state)


def stream_of(redis: aioredis.Redis, settings: Settings, task: Task) -> TaskStream:
    return TaskStream.for_task(redis, settings, task.id)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT))


async def request(ws: ClientConnection, **message: Any) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    return await receive(ws)


async def until_terminal(ws: ClientConnection) -> list[dict[str, Any]]:
    received = []
    while not received or received[-1]["type"] not in ("done", "error", "cancelled"):
        received.append(await receive(ws))
    return received


@pytest.fixture
async def ws(live_processes: LiveServer, live_user: Account) -> AsyncIterator[ClientConnection]:
    url = f"{live_processes.ws_url}?access_token={live_user.access_token}"
    async with websockets.connect(url) as connection:
        ready = await receive(connection)
        assert ready == {"type": "ready", "user_id": live_user.id, "ref": None}
        yield connection


async def test_subscribe_streams_events_in_order_then_consumed(
    ws: ClientConnection, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user)
    stream = stream_of(redis, live_settings, task)
    first = await stream.append(TokenEvent(delta="Hel"))
    assert await request(ws, type="subscribe", task_id=task.id, ref="r1") == {
        "type": "subscribed",
        "task_id": task.id,
        "ref": "r1",
    }
    ids = [first]
    for token in ["lo", " wor", "ld"]:
        ids.append(await stream.append(TokenEvent(delta=token)))
    ids.append(
        await stream.append(DoneEvent(message_id="m", prompt_tokens=2, completion_tokens=4, cost=1))
    )
    received = await until_terminal(ws)
    assert [m["id"] for m in received] == ids
    assert all(m["task_id"] == task.id for m in received)
    assert "".join(m["delta"] for m in received[:-1]) == "Hello world"
    assert received[-1] == {
        "type": "done",
        "id": ids[-1],
        "task_id": task.id,
        "message_id": "m",
        "prompt_tokens": 2,
        "completion_tokens": 4,
        "cost": 1,
        "reference": None,  # a plain chat's answer has no sources
        "finish_reason": "stop",
        "answer": None,  # the streamed tokens are the answer
    }
    again = await request(ws, type="subscribe", task_id=task.id)
    assert again["type"] == "error" and again["code"] == 410 and again["task_id"] == task.id


async def test_task_error_event_is_tagged_and_distinct_from_protocol_errors(
    ws: ClientConnection, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user, TaskState.FAILED)
    stream = stream_of(redis, live_settings, task)
    event_id = await stream.append(ErrorEvent(code="provider_timeout", message="slow"))
    await request(ws, type="subscribe", task_id=task.id)
    assert await receive(ws) == {
        "type": "error",
        "id": event_id,
        "task_id": task.id,
        "code": "provider_timeout",
        "message": "slow",
    }


async def test_several_tasks_over_one_socket(
    ws: ClientConnection, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    tasks = [await new_task(live_user) for _ in range(3)]
    streams = [stream_of(redis, live_settings, t) for t in tasks]
    for task in tasks:
        assert (await request(ws, type="subscribe", task_id=task.id))["type"] == "subscribed"
    expected: dict[str, list[str]] = {t.id: [] for t in tasks}
    for i in range(10):
        for task, stream in zip(tasks, streams, strict=True):
            expected[task.id].append(await stream.append(TokenEvent(delta=f"{task.id}:{i}")))
    for task, stream in zip(tasks, streams, strict=True):
        expected[task.id].append(await stream.append(CancelledEvent()))
    received: dict[str, list[dict[str, Any]]] = {t.id: [] for t in tasks}
    while any(not r or r[-1]["type"] != "cancelled" for r in received.values()):
        message = await receive(ws)
        received[message["task_id"]].append(message)
    for task in tasks:
        assert [m["id"] for m in received[task.id]] == expected[task.id]
        assert [m["delta"] for m in received[task.id][:-1]] == [f"{task.id}:{i}" for i in range(10)]


async def test_resume_with_last_event_id(
    ws: ClientConnection, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user, TaskState.SUCCEEDED)
    stream = stream_of(redis, live_settings, task)
    ids = [await stream.append(TokenEvent(delta=str(i))) for i in range(5)]
    ids.append(await stream.append(CancelledEvent()))
    await request(ws, type="subscribe", task_id=task.id, last_event_id=ids[2])
    assert [m["id"] for m in await until_terminal(ws)] == ids[3:]


async def test_unsubscribe_releases_the_stream_for_a_resume(
    ws: ClientConnection,
    live_processes: LiveServer,
    redis: aioredis.Redis,
    live_settings: Settings,
    live_user: Account,
) -> None:
    task = await new_task(live_user)
    stream = stream_of(redis, live_settings, task)
    first = await stream.append(TokenEvent(delta="a"))
    await request(ws, type="subscribe", task_id=task.id)
    assert (await receive(ws))["id"] == first
    assert await request(ws, type="unsubscribe", task_id=task.id, ref="u") == {
        "type": "unsubscribed",
        "task_id": task.id,
        "ref": "u",
    }
    rest = [await stream.append(TokenEvent(delta="b")), await stream.append(CancelledEvent())]
    async with (
        httpx.AsyncClient(base_url=live_processes.base_url, timeout=10) as http,
        http.stream(
            "GET",
            f"/api/v1/tasks/{task.id}/stream",
            headers={**bearer(live_user.access_token), "Last-Event-ID": first},
        ) as response,
    ):
        assert response.status_code == 200
        assert [f.id async for f in events(response)] == rest


async def test_disconnect_mid_stream_releases_the_lease(
    live_processes: LiveServer, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user)
    stream = stream_of(redis, live_settings, task)
    first = await stream.append(TokenEvent(delta="a"))
    url = f"{live_processes.ws_url}?access_token={live_user.access_token}"
    async with websockets.connect(url) as ws:
        await receive(ws)
        await request(ws, type="subscribe", task_id=task.id)
        assert (await receive(ws))["id"] == first
    async with websockets.connect(url) as ws:
        await receive(ws)
        assert (await request(ws, type="subscribe", task_id=task.id, last_event_id=first))[
            "type"
        ] == "subscribed"
        last = await stream.append(CancelledEvent())
        assert (await receive(ws))["id"] == last


async def test_second_reader_is_refused(
    ws: ClientConnection,
    live_processes: LiveServer,
    redis: aioredis.Redis,
    live_settings: Settings,
    live_user: Account,
) -> None:
    task = await new_task(live_user)
    stream = stream_of(redis, live_settings, task)
    await stream.append(TokenEvent(delta="a"))
    assert (await request(ws, type="subscribe", task_id=task.id))["type"] == "subscribed"
    await receive(ws)
    again = await request(ws, type="subscribe", task_id=task.id)
    assert again["code"] == 409 and again["task_id"] == task.id
    url = f"{live_processes.ws_url}?access_token={live_user.access_token}"
    async with websockets.connect(url) as other:
        await receive(other)
        refused = await request(other, type="subscribe", task_id=task.id, ref="x")
        assert refused["type"] == "error" and refused["code"] == 409 and refused["ref"] == "x"
    async with httpx.AsyncClient(base_url=live_processes.base_url, timeout=10) as http:
        sse = await http.get(
            f"/api/v1/tasks/{task.id}/stream", headers=bearer(live_user.access_token)
        )
        assert sse.status_code == 409
    await stream.append(CancelledEvent())
    assert (await receive(ws))["type"] == "cancelled"


async def test_another_users_task_and_missing_task_are_404(
    ws: ClientConnection, redis: aioredis.Redis, live_settings: Settings, live_other_user: Account
) -> None:
    task = await new_task(live_other_user)
    await stream_of(redis, live_settings, task).append(TokenEvent(delta="secret"))
    for task_id in (task.id, UNKNOWN_ID):
        reply = await request(ws, type="subscribe", task_id=task_id)
        assert reply["type"] == "error" and reply["code"] == 404 and reply["task_id"] == task_id
    assert (await request(ws, type="unsubscribe", task_id=task.id))["code"] == 404


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("not json", "JSON objects"),
        ("[1, 2]", "JSON objects"),
        ('{"no_type": 1}', "type"),
        ('{"type": "dance"}', "type"),
        ('{"type": "subscribe"}', "task_id"),
        ('{"type": "subscribe", "task_id": "t", "last_event_id": "$"}', "last event id"),
        ('{"type": "send", "session_id": "s"}', "content"),
    ],
)
async def test_malformed_messages_get_an_error_and_the_socket_stays_open(
    ws: ClientConnection, live_user: Account, raw: str, fragment: str
) -> None:
    if "last_event_id" in raw:
        raw = raw.replace('"t"', json.dumps((await new_task(live_user)).id))
    await ws.send(raw)
    reply = await receive(ws)
    assert reply["type"] == "error" and reply["code"] == 400
    assert fragment in reply["message"]
    assert await request(ws, type="ping", ref="p") == {"type": "pong", "ref": "p"}


@pytest.mark.parametrize(
    "message",
    [
        {"type": "subscribe"},
        {"type": "dance"},
        {},
        {"type": "send", "session_id": "s"},
        {"type": "subscribe", "task_id": 5},
        {"type": "cancel", "task_id": "t", "extra": {"deep": [1, 2, 3]}, "last_event_id": 1},
    ],
)
async def test_an_invalid_message_still_gets_its_ref_back(
    ws: ClientConnection, message: dict[str, Any]
) -> None:
    reply = await request(ws, **message, ref="my-ref")
    assert reply["type"] == "error" and reply["code"] == 400
    assert reply["ref"] == "my-ref"
    # A ref that is itself invalid cannot be echoed faithfully.
    assert (await request(ws, type="subscribe", ref=7))["ref"] is None
    assert (await request(ws, type="subscribe", ref="x" * 129))["ref"] is None


async def test_binary_frames_are_parsed_like_text(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "ping"}).encode())
    assert (await receive(ws))["type"] == "pong"


async def test_auth_with_first_message(live_processes: LiveServer, live_user: Account) -> None:
    async with websockets.connect(live_processes.ws_url) as ws:
        reply = await request(ws, type="auth", token=live_user.access_token, ref="a")
        assert reply == {"type": "ready", "user_id": live_user.id, "ref": "a"}
        assert (await request(ws, type="ping"))["type"] == "pong"


async def test_auth_with_header(live_processes: LiveServer, live_user: Account) -> None:
    async with websockets.connect(
        live_processes.ws_url, additional_headers=bearer(live_user.access_token)
    ) as ws:
        assert (await receive(ws))["type"] == "ready"


async def assert_closed_unauthorized(ws: ClientConnection) -> None:
    reply = await receive(ws)
    assert reply["type"] == "error" and reply["code"] == 401
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_bad_query_token_is_closed_4401(live_processes: LiveServer) -> None:
    async with websockets.connect(f"{live_processes.ws_url}?access_token=nope") as ws:
        await assert_closed_unauthorized(ws)


@pytest.mark.parametrize(
    "first",
    [
        {"type": "auth", "token": "not-a-valid-token"},
        {"type": "ping"},
        {"type": "subscribe", "task_id": "x"},
    ],
)
async def test_bad_first_message_is_closed_4401(
    live_processes: LiveServer, first: dict[str, str]
) -> None:
    async with websockets.connect(live_processes.ws_url) as ws:
        await ws.send(json.dumps(first))
        await assert_closed_unauthorized(ws)


async def test_silence_is_closed_4401_after_the_auth_timeout(
    live_processes: LiveServer, live_settings: Settings
) -> None:
    async with websockets.connect(live_processes.ws_url) as ws:
        started = asyncio.get_running_loop().time()
        await assert_closed_unauthorized(ws)
        elapsed = asyncio.get_running_loop().time() - started
        assert live_settings.ws_auth_timeout_seconds - 0.2 <= elapsed < 5


async def test_cancel_of_unknown_task_is_an_error_reply(ws: ClientConnection) -> None:
    reply = await request(ws, type="cancel", task_id=UNKNOWN_ID, ref="c")
    assert reply == {
        "type": "error",
        "code": 404,
        "message": reply["message"],
        "task_id": UNKNOWN_ID,
        "ref": "c",
    }


async def test_send_to_unknown_session_is_an_error_reply(ws: ClientConnection) -> None:
    reply = await request(ws, type="send", session_id=UNKNOWN_ID, content="hi")
    assert reply["type"] == "error" and reply["code"] == 404


async def test_plain_http_get_is_426_and_documented(live_processes: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_processes.base_url) as http:
        response = await http.get("/api/v1/ws")
        assert response.status_code == 426 and response.json()["code"] == 426
        assert response.headers["upgrade"] == "websocket"
        document = (await http.get("/openapi.json")).json()
    assert "/api/v1/ws" in document["paths"]
