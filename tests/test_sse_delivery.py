"""SSE delivery over real sockets: Hypercorn in a subprocess, real Redis, real SQL.

Events are appended by the test through TaskStream, exactly as the chat worker does,
so every delivery rule is exercised without depending on a model.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import CancelledEvent, DoneEvent, TokenEvent
from tests.support.accounts import Account
from tests.support.live_server import LiveServer
from tests.support.sse_client import Frame, bearer, events, frames


@pytest.fixture
async def redis(live_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(live_settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def http(live_processes: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_processes.base_url, timeout=10) as client:
        yield client


async def new_task(account: Account, state: TaskState = TaskState.RUNNING) -> Task:
    return await Task.create(user_id=account.id, model="test-model", state=state)


def stream_of(redis: aioredis.Redis, settings: Settings, task: Task) -> TaskStream:
    return TaskStream.for_task(redis, settings, task.id)


async def append_answer(stream: TaskStream, tokens: list[str]) -> list[str]:
    ids = [await stream.append(TokenEvent(delta=t)) for t in tokens]
    ids.append(
        await stream.append(
            DoneEvent(message_id="m", prompt_tokens=3, completion_tokens=len(tokens), cost=1)
        )
    )
    return ids


async def read_all(
    http: httpx.AsyncClient, task: Task, account: Account, **params: str
) -> list[Frame]:
    async with http.stream(
        "GET",
        f"/api/v1/tasks/{task.id}/stream",
        headers=bearer(account.access_token),
        params=params,
    ) as response:
        assert response.status_code == 200, await response.aread()
        return [frame async for frame in events(response)]


def url(task: Task) -> str:
    return f"/api/v1/tasks/{task.id}/stream"


async def test_tokens_arrive_in_order_and_complete_while_produced(
    http: httpx.AsyncClient, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user)
    stream = stream_of(redis, live_settings, task)
    tokens = [f"tok{i} " for i in range(50)]

    async def produce() -> list[str]:
        await asyncio.sleep(0.2)
        ids = []
        for token in tokens:
            ids.append(await stream.append(TokenEvent(delta=token)))
            await asyncio.sleep(0.002)
        ids.append(
            await stream.append(
                DoneEvent(message_id="m1", prompt_tokens=5, completion_tokens=50, cost=2)
            )
        )
        return ids

    producer = asyncio.create_task(produce())
    async with http.stream("GET", url(task), headers=bearer(live_user.access_token)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        received = [frame async for frame in events(response)]
    ids = await producer
    assert [f.id for f in received] == ids
    assert [f.data["delta"] for f in received[:-1]] == tokens
    assert received[-1].event == "done"
    assert received[-1].data == {
        "message_id": "m1",
        "prompt_tokens": 5,
        "completion_tokens": 50,
        "cost": 2,
        "reference": None,  # a plain chat's answer has no sources
        "finish_reason": "stop",
        "answer": None,  # the streamed tokens are the answer
    }


async def test_frames_are_newline_separated_lines(
    http: httpx.AsyncClient, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user, TaskState.SUCCEEDED)
    ids = await append_answer(stream_of(redis, live_settings, task), ["a\nb", "c"])
    async with http.stream("GET", url(task), headers=bearer(live_user.access_token)) as response:
        raw = (await response.aread()).decode()
    assert "\r" not in raw
    opening, first = raw.split("\n\n")[:2]
    assert opening == f"retry: {round(live_settings.sse_retry_seconds * 1000)}"
    assert first == f'id: {ids[0]}\nevent: token\ndata: {{"delta":"a\\nb"}}'
    assert raw.endswith("\n\n")


async def test_heartbeat_comments_on_an_idle_stream(
    http: httpx.AsyncClient, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user)
    stream = stream_of(redis, live_settings, task)
    seen: list[Frame] = []
    async with http.stream("GET", url(task), headers=bearer(live_user.access_token)) as response:
        async for frame in frames(response):
            seen.append(frame)
            if len(seen) == 2:
                await append_answer(stream, ["late"])
    assert seen[0].retry is not None  # the opening frame
    assert seen[1].comment == "heartbeat"
    assert [f.event for f in seen if f.event] == ["token", "done"]


async def test_second_concurrent_reader_is_refused(
    http: httpx.AsyncClient, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user)
    stream = stream_of(redis, live_settings, task)
    await stream.append(TokenEvent(delta="first"))
    async with http.stream("GET", url(task), headers=bearer(live_user.access_token)) as first:
        iterator = events(first)
        assert (await anext(iterator)).data == {"delta": "first"}
        second = await http.get(url(task), headers=bearer(live_user.access_token))
        assert second.status_code == 409
        body = second.json()
        assert body["code"] == 409 and "one reader at a time" in body["message"]
        await stream.append(CancelledEvent())
        assert (await anext(iterator)).event == "cancelled"


async def test_consumed_stream_is_gone(
    http: httpx.AsyncClient, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user, TaskState.SUCCEEDED)
    await append_answer(stream_of(redis, live_settings, task), ["x", "y"])
    assert [f.event for f in await read_all(http, task, live_user)] == ["token", "token", "done"]
    again = await http.get(url(task), headers=bearer(live_user.access_token))
    assert again.status_code == 410
    assert f"/api/v1/tasks/{task.id}" in again.json()["message"]


async def test_resume_after_terminal_event_is_gone(
    http: httpx.AsyncClient, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    """A client that got `done` but dropped before the server noticed must not read again."""
    task = await new_task(live_user, TaskState.SUCCEEDED)
    ids = await append_answer(stream_of(redis, live_settings, task), ["x"])
    response = await http.get(
        url(task), headers={**bearer(live_user.access_token), "Last-Event-ID": ids[-1]}
    )
    assert response.status_code == 410


async def test_consumed_stream_still_resumes_from_an_earlier_entry(
    http: httpx.AsyncClient, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    """The terminal was written to a connection that died before the client read it."""
    task = await new_task(live_user, TaskState.SUCCEEDED)
    stream = stream_of(redis, live_settings, task)
    ids = await append_answer(stream, ["a", "b", "c"])
    await stream.mark_consumed()
    headers = bearer(live_user.access_token)
    rest = await read_all(http, task, live_user, last_event_id=ids[1])
    assert [f.id for f in rest] == ids[2:]
    assert [f.event for f in rest] == ["token", "done"]
    for refused in ({}, {"Last-Event-ID": ids[-1]}, {"Last-Event-ID": "1-0"}):
        response = await http.get(url(task), headers={**headers, **refused})
        assert response.status_code == 410, refused


async def test_expired_stream_of_finished_task_is_gone_and_starts_nothing(
    http: httpx.AsyncClient, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user, TaskState.SUCCEEDED)
    stream = stream_of(redis, live_settings, task)
    await append_answer(stream, ["x"])
    await redis.delete(stream.key)
    response = await http.get(
        url(task), headers=bearer(live_user.access_token), params={"last_event_id": "1-0"}
    )
    assert response.status_code == 410
    assert not await redis.exists(stream.key)
    await task.refresh_from_db()
    assert task.state is TaskState.SUCCEEDED


async def test_resume_at_random_cut_points_delivers_every_event_once(
    http: httpx.AsyncClient, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    rng = random.Random(1234)
    for _ in range(30):
        task = await new_task(live_user)
        stream = stream_of(redis, live_settings, task)
        tokens = [f"t{i}" for i in range(20)]
        producer = asyncio.create_task(append_slowly(stream, tokens))
        received: list[Frame] = []
        last_id: str | None = None
        cuts = sorted(rng.sample(range(1, len(tokens)), 2))
        while not (received and received[-1].terminal):
            headers = bearer(live_user.access_token)
            if last_id:
                headers["Last-Event-ID"] = last_id
            async with http.stream("GET", url(task), headers=headers) as response:
                assert response.status_code == 200, await response.aread()
                async for frame in events(response):
                    received.append(frame)
                    last_id = frame.id
                    if cuts and len(received) == cuts[0]:
                        cuts.pop(0)
                        break
        ids = await producer
        assert [f.id for f in received] == ids
        assert [f.data.get("delta") for f in received[:-1]] == tokens


async def append_slowly(stream: TaskStream, tokens: list[str]) -> list[str]:
    ids = []
    for token in tokens:
        ids.append(await stream.append(TokenEvent(delta=token)))
        await asyncio.sleep(0.003)
    ids.append(
        await stream.append(
            DoneEvent(message_id=None, prompt_tokens=1, completion_tokens=1, cost=0)
        )
    )
    return ids


async def test_resume_with_query_parameter(
    http: httpx.AsyncClient, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user, TaskState.SUCCEEDED)
    ids = await append_answer(stream_of(redis, live_settings, task), ["a", "b", "c"])
    received = await read_all(http, task, live_user, last_event_id=ids[1])
    assert [f.id for f in received] == ids[2:]


async def test_malformed_last_event_id_is_400(http: httpx.AsyncClient, live_user: Account) -> None:
    task = await new_task(live_user)
    response = await http.get(
        url(task), headers={**bearer(live_user.access_token), "Last-Event-ID": "$"}
    )
    assert response.status_code == 400
    assert "last event id" in response.json()["message"]


async def test_another_users_task_is_404(
    http: httpx.AsyncClient,
    redis: aioredis.Redis,
    live_settings: Settings,
    live_user: Account,
    live_other_user: Account,
) -> None:
    task = await new_task(live_user)
    await stream_of(redis, live_settings, task).append(TokenEvent(delta="secret"))
    response = await http.get(url(task), headers=bearer(live_other_user.access_token))
    assert response.status_code == 404
    assert response.json()["code"] == 404
    missing = await http.get(
        "/api/v1/tasks/nosuchtask/stream", headers=bearer(live_user.access_token)
    )
    assert missing.status_code == 404


async def test_auth_failures(http: httpx.AsyncClient, live_user: Account) -> None:
    task = await new_task(live_user)
    no_token = await http.get(url(task))
    assert no_token.status_code == 401 and no_token.json()["code"] == 401
    bad = await http.get(url(task), headers=bearer("not-a-token"))
    assert bad.status_code == 401
    bad_query = await http.get(url(task), params={"access_token": "not-a-token"})
    assert bad_query.status_code == 401


async def test_query_token_accepted_on_stream_route_only(
    http: httpx.AsyncClient, redis: aioredis.Redis, live_settings: Settings, live_user: Account
) -> None:
    task = await new_task(live_user, TaskState.SUCCEEDED)
    await append_answer(stream_of(redis, live_settings, task), ["q"])
    async with http.stream(
        "GET", url(task), params={"access_token": live_user.access_token}
    ) as response:
        assert response.status_code == 200
        assert [f.event async for f in events(response)] == ["token", "done"]
    not_streaming = await http.get(
        "/api/v1/users/me/credits", params={"access_token": live_user.access_token}
    )
    assert not_streaming.status_code == 401
    with_header = await http.get("/api/v1/users/me/credits", headers=bearer(live_user.access_token))
    assert with_header.status_code == 200


async def test_stream_route_is_documented(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    operation = document["paths"]["/api/v1/tasks/{task_id}/stream"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"task_id", "last_event_id", "access_token"} <= names
