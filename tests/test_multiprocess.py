"""Several web processes share one Redis and one database: a task created through one
process streams through another, over SSE and over the WebSocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.live_server import (
    FAST_TOKENS,
    LiveServer,
    ServerProcess,
    create_chat_session,
    start_hypercorn,
)
from tests.support.sse_client import bearer, events

MAX_ROUNDS = 60


@pytest.fixture(scope="module")
async def second_server(live_settings: Settings, live_log_dir: Path) -> AsyncIterator[LiveServer]:
    server = await start_hypercorn(live_settings, live_log_dir)
    yield server
    server.server.stop()


async def create_task(base_url: str, account: Account) -> str:
    session = await create_chat_session(account)
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.post(
            "/api/v1/tasks",
            json={"session_id": session.id, "question": "hi"},
            headers=bearer(account.access_token),
        )
    assert response.status_code == 201, response.text
    return response.json()["data"]["task_id"]


async def sse_tokens(base_url: str, account: Account, task_id: str) -> list[str]:
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10) as http,
        http.stream(
            "GET", f"/api/v1/tasks/{task_id}/stream", headers=bearer(account.access_token)
        ) as response,
    ):
        assert response.status_code == 200, await response.aread()
        frames = [frame async for frame in events(response)]
    assert frames[-1].event == "done"
    return [f.data["delta"] for f in frames if f.event == "token"]


async def ws_tokens(ws_url: str, account: Account, task_id: str) -> list[str]:
    async with websockets.connect(f"{ws_url}?access_token={account.access_token}") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "subscribe", "task_id": task_id}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        messages = []
        while not messages or messages[-1]["type"] not in ("done", "error", "cancelled"):
            messages.append(json.loads(await ws.recv()))
    assert messages[-1]["type"] == "done"
    return [m["delta"] for m in messages if m["type"] == "token"]


def complete(tokens: list[str]) -> bool:
    return len("".join(tokens).split()) == FAST_TOKENS


async def test_created_on_one_process_streamed_on_another_over_sse(
    live_server: LiveServer,
    second_server: LiveServer,
    chat_worker: ServerProcess,
    live_user: Account,
) -> None:
    task_id = await create_task(live_server.base_url, live_user)
    assert complete(await sse_tokens(second_server.base_url, live_user, task_id))


async def test_created_on_one_process_streamed_on_another_over_websocket(
    live_server: LiveServer,
    second_server: LiveServer,
    chat_worker: ServerProcess,
    live_user: Account,
) -> None:
    task_id = await create_task(second_server.base_url, live_user)
    assert complete(await ws_tokens(live_server.ws_url, live_user, task_id))


async def hub_processes(redis: aioredis.Redis, prefix: str) -> set[bytes]:
    """Wake streams of stream-hub readers: each web process that streamed has its own."""
    return {key async for key in redis.scan_iter(f"{prefix}:hub:*:wake")}


async def test_two_workers_on_one_port_share_tasks(
    live_server_two_workers: LiveServer, chat_worker: ServerProcess, live_user: Account
) -> None:
    """Each round uses fresh connections, so the kernel spreads them over both workers;
    rounds go on until streams were served by two different processes."""
    server = live_server_two_workers
    redis = aioredis.from_url(server.settings.redis_url)
    try:
        before = await hub_processes(redis, server.settings.redis_prefix)
        for round_number in range(MAX_ROUNDS):
            task_id = await create_task(server.base_url, live_user)
            if round_number % 2:
                tokens = await ws_tokens(server.ws_url, live_user, task_id)
            else:
                tokens = await sse_tokens(server.base_url, live_user, task_id)
            assert complete(tokens)
            served = await hub_processes(redis, server.settings.redis_prefix) - before
            if len(served) >= 2 and round_number >= 1:
                break
        assert len(served) >= 2, f"only {len(served)} process streamed in {MAX_ROUNDS} rounds"
    finally:
        await redis.aclose()
