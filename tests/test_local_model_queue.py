"""The local model's line, end to end: with LOCAL_MODEL_PARALLEL=1 a second user's
answer waits behind the first, and says so in its task status and its event stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from quart import Quart

from backend.providers.catalog import LOCAL_MODEL_ID
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.live_server import (
    LiveServer,
    create_chat_session,
    delete_prefix,
    start_chat_worker,
    start_hypercorn,
)
from tests.support.sse_client import bearer, events
from tests.support.stack_database import stack_database

pytestmark = pytest.mark.timeout(90)

STORY = "Write a long story about a dragon."


@pytest.fixture(scope="module")
async def local_stack(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    """Hypercorn and a chat worker serving only the built-in local model, one at a time."""
    log_dir: Path = tmp_path_factory.mktemp("local-queue")
    async with stack_database(settings, log_dir) as own, serving(own, log_dir) as server:
        yield server


@asynccontextmanager
async def serving(own: Settings, log_dir: Path) -> AsyncIterator[LiveServer]:
    """On a database of its own: the session's other chat workers would reap its answers,
    whose heartbeats they cannot see under their Redis prefix."""
    live = own.model_copy(
        update={
            "redis_prefix": f"local-queue-{uuid.uuid4().hex[:8]}",
            "data_dir": log_dir / "data",
            "admin_username": "",
            "admin_password": "",
            "models": "",
            "default_model": "",
            "local_model_parallel": 1,
            "local_model_threads": 1,
            "sse_heartbeat_seconds": 1.0,
        }
    )
    server = await start_hypercorn(live, log_dir)
    try:
        worker = await start_chat_worker(live, log_dir)
        try:
            yield server
        finally:
            worker.stop()
    finally:
        server.server.stop()
        await delete_prefix(live.redis_url, live.redis_prefix)


async def ask(http: httpx.AsyncClient, account: Account, question: str) -> str:
    session = await create_chat_session(account, model=LOCAL_MODEL_ID)
    response = await http.post(
        "/api/v1/tasks",
        json={"session_id": session.id, "question": question},
        headers=bearer(account.access_token),
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]["task_id"]


async def status(http: httpx.AsyncClient, account: Account, task_id: str) -> dict:
    response = await http.get(f"/api/v1/tasks/{task_id}", headers=bearer(account.access_token))
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_an_answer_behind_another_says_it_is_queued(local_stack: LiveServer) -> None:
    first_user = await create_account(local_stack.settings)
    second_user = await create_account(local_stack.settings)
    async with httpx.AsyncClient(base_url=local_stack.base_url, timeout=30) as http:
        first = await ask(http, first_user, STORY)
        deadline = asyncio.get_running_loop().time() + 30
        while (await status(http, first_user, first))["status"] != "running":
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        assert (await status(http, first_user, first))["queue_position"] is None

        second = await ask(http, second_user, STORY)
        while (seen := await status(http, second_user, second))["queue_position"] is None:
            assert asyncio.get_running_loop().time() < deadline, seen
            await asyncio.sleep(0.05)
        assert seen["status"] == "running" and seen["queue_position"] == 1

        headers = bearer(second_user.access_token)
        async with http.stream(
            "GET", f"/api/v1/tasks/{second}/stream", headers=headers
        ) as response:
            assert response.status_code == 200
            frames = aiter(events(response))
            queued = await anext(frames)
            assert (queued.event, queued.data) == ("queued", {"position": 1})

            # The first answer ends (its user cancels): the second's turn comes.
            cancel = await http.post(
                f"/api/v1/tasks/{first}/cancel", headers=bearer(first_user.access_token)
            )
            assert cancel.status_code == 200
            started = await anext(frames)
            assert (started.event, started.data) == ("queued", {"position": 0})
            token = await anext(frames)
            assert token.event == "token" and token.data["delta"]
            assert (await status(http, second_user, second))["queue_position"] is None

            await http.post(f"/api/v1/tasks/{second}/cancel", headers=headers)
            rest = [frame async for frame in frames]
        assert rest[-1].event == "cancelled"
        assert all(frame.event != "queued" for frame in rest)
