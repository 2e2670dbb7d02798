"""Helpers for the assistant, session and message tests: accounts made through the
services (no dependency on the identity routes), assistants and sessions made through
the API, and a stand-in for the chat worker that answers a task on its stream.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from quart import Quart
from quart.testing import QuartClient

from backend.models import Task
from backend.providers.registry import default_model
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import DoneEvent, TokenEvent
from tests.support.accounts import Account, create_account
from tests.support.fake_openai import fake_openai_server
from tests.support.live_server import (
    LiveServer,
    delete_prefix,
    start_chat_worker,
    start_hypercorn,
)

LIVE_MODEL = "echo-live"
LIVE_TOKENS_PER_SECOND = 50.0

__all__ = [
    "Account",
    "answer_next_task",
    "create_account",
    "create_chat",
    "create_session",
    "live_chat_stack",
    "next_task",
]


async def create_chat(client: QuartClient, account: Account, **fields: Any) -> dict[str, Any]:
    body = {"name": f"chat-{uuid.uuid4().hex[:8]}", **fields}
    response = await client.post("/api/v1/chats", json=body, headers=account.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["data"]


async def create_session(
    client: QuartClient, account: Account, chat_id: str, name: str = "s"
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/chats/{chat_id}/sessions", json={"name": name}, headers=account.headers
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["data"]


def model_id() -> str:
    return default_model().id


async def next_task(user_id: int, wait_seconds: float = 10.0) -> Task:
    """The first task `user_id` starts, waiting for the request that creates it."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        task = await Task.filter(user_id=user_id).first()
        if task is not None:
            return task
        assert asyncio.get_running_loop().time() < deadline, "no task was created"
        await asyncio.sleep(0.02)


async def answer_next_task(app: Quart, user_id: int, tokens: list[str]) -> Task:
    """Wait for the user's task and append an answer to its stream, as the worker would."""
    settings: Settings = app.config["SETTINGS"]
    task = await next_task(user_id)
    stream = TaskStream.for_task(app.config["REDIS"], settings, task.id)
    for token in tokens:
        await stream.append(TokenEvent(delta=token))
    await stream.append(
        DoneEvent(message_id=None, prompt_tokens=7, completion_tokens=len(tokens), cost=0)
    )
    return task


@asynccontextmanager
async def live_chat_stack(settings: Settings, log_dir: Path) -> AsyncIterator[LiveServer]:
    """Hypercorn and a chat worker serving one OpenAI-compatible model, backed by the fake
    upstream, which echoes the last user message word by word at LIVE_TOKENS_PER_SECOND."""
    async with fake_openai_server(tokens_per_second=LIVE_TOKENS_PER_SECOND) as fake:
        model = {
            "id": LIVE_MODEL,
            "provider": "openai",
            "upstream": LIVE_MODEL,
            "base_url": fake.base_url,
            "api_key": "test-key",
            "context_window": 4096,
            "max_output": 256,
        }
        live = settings.model_copy(
            update={
                "redis_prefix": f"chats-live-{uuid.uuid4().hex[:8]}",
                "data_dir": log_dir / "data",
                "admin_username": "",
                "admin_password": "",
                "models": json.dumps([model]),
                "default_model": LIVE_MODEL,
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
