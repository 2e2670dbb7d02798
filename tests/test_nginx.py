"""Behind nginx with its default proxy buffering, tokens still arrive as they are produced,
because the SSE response says `X-Accel-Buffering: no`.

nginx comes from Debian's packages: if it is missing, the test installs it with apt-get
when it can (root, apt-get present), and otherwise skips saying why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import redis.asyncio as aioredis

from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import DoneEvent, TokenEvent
from tests.support.accounts import Account
from tests.support.live_server import LiveServer, ServerProcess, free_port, spawn
from tests.support.nginx import install_nginx, main_config, wait_listening
from tests.support.sse_client import bearer, events

FIRST_TOKEN_BUDGET_SECONDS = 1.0

SITE = """
    upstream sluice { server 127.0.0.1:{upstream}; }
    server {
        listen 127.0.0.1:{port};
        location / {
            proxy_pass http://sluice;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
"""


@dataclass
class Nginx:
    port: int
    process: ServerProcess

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
async def nginx(
    live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Nginx]:
    binary = install_nginx()
    root = tmp_path_factory.mktemp("nginx")
    port = free_port()
    config = root / "nginx.conf"
    config.write_text(
        main_config(
            root,
            SITE.replace("{upstream}", str(live_server.port)).replace("{port}", str(port)),
        )
    )
    process = spawn(
        "nginx", [binary, "-c", str(config), "-p", str(root)], live_server.settings, root
    )
    await wait_listening(port, process, root)
    yield Nginx(port, process)
    process.stop()


async def first_token_delay(base_url: str, account: Account, settings: Settings) -> float:
    """Seconds from appending the first token to reading it through `base_url`."""
    task = await Task.create(user_id=account.id, model="m", state=TaskState.RUNNING)
    redis = aioredis.from_url(settings.redis_url)
    stream = TaskStream.for_task(redis, settings, task.id)
    try:
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=10) as http,
            http.stream(
                "GET",
                f"/api/v1/tasks/{task.id}/stream",
                headers=bearer(account.access_token),
            ) as response,
        ):
            assert response.status_code == 200
            await asyncio.sleep(0.3)
            appended = time.monotonic()
            await stream.append(TokenEvent(delta="first"))
            finisher = asyncio.create_task(finish_later(stream, 2 * FIRST_TOKEN_BUDGET_SECONDS))
            iterator = events(response)
            first = await anext(iterator)
            delay = time.monotonic() - appended
            assert first.data == {"delta": "first"}
            assert [f.event async for f in iterator] == ["done"]
            await finisher
            return delay
    finally:
        await redis.aclose()


async def finish_later(stream: TaskStream, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await stream.append(DoneEvent(message_id=None, prompt_tokens=0, completion_tokens=1, cost=0))


async def test_first_token_arrives_promptly_through_nginx(
    nginx: Nginx, live_user: Account, live_settings: Settings
) -> None:
    delay = await first_token_delay(nginx.base_url, live_user, live_settings)
    assert delay < FIRST_TOKEN_BUDGET_SECONDS
