"""Waits on the first token's path that were ours (issue 16): each test stretches the wait
it guards to seconds, so the old behaviour fails by a margin no loaded machine explains."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis
from quart import Quart

from backend.models import User
from backend.providers.registry import close_registry, configure_registry
from backend.services import tasks
from backend.settings import Settings
from backend.streams import hub as hub_module
from backend.streams.hub import StreamHub
from backend.streams.task_stream import START, TaskStream
from schemas.events import TokenEvent
from tests.support.accounts import create_account
from tests.support.fake_openai import FakeOpenAIServer, fake_openai_server
from tests.support.private_redis import running_private_redis
from tests.support.stream_hubs import own_hub, until_blocked
from tests.support.task_models import CHEAP, with_models
from tests.test_tasks import make_session
from workers.jobs.chat import generate_answer

STRETCHED_SECONDS = 3.0


@pytest.fixture
async def hub(redis_url: str) -> AsyncIterator[StreamHub]:
    async with own_hub(redis_url, "ftw-test") as stream_hub:
        yield stream_hub


async def test_a_new_streams_first_entry_does_not_wait_for_the_linger(
    hub: StreamHub, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Subscribing to a new stream wakes the hub's blocked read; a reply of that wake
    alone is followed at once, with the new key. Before, the hub lingered after it as
    after entries (3 ms), and a first token appended meanwhile waited it out."""
    monkeypatch.setattr(hub_module, "LINGER_SECONDS", STRETCHED_SECONDS)
    first = TaskStream(redis, "ftw-test", uuid.uuid4().hex)
    await hub.subscribe(first.key, START)
    await until_blocked(hub, redis)

    stream = TaskStream(redis, "ftw-test", uuid.uuid4().hex)
    subscription = await hub.subscribe(stream.key, START)
    started = time.monotonic()
    await stream.append(TokenEvent(delta="first"))
    entry = await subscription.get(STRETCHED_SECONDS * 2)
    waited = time.monotonic() - started
    assert entry is not None and entry.payload() == {"delta": "first"}
    assert waited < STRETCHED_SECONDS / 2, waited


async def test_entries_still_gather_during_the_linger(
    hub: StreamHub, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a reply that carried entries the hub still lingers, so the entries appended
    meanwhile come in one reply (the CPU saving the linger is for)."""
    monkeypatch.setattr(hub_module, "LINGER_SECONDS", 0.3)
    stream = TaskStream(redis, "ftw-test", uuid.uuid4().hex)
    subscription = await hub.subscribe(stream.key, START)
    await until_blocked(hub, redis)
    await stream.append(TokenEvent(delta="0"))
    assert await subscription.get(5) is not None
    for i in range(1, 4):
        await stream.append(TokenEvent(delta=str(i)))
    await asyncio.sleep(0.05)
    assert subscription.waiting == 0  # still lingering: nothing read yet
    received = [await subscription.get(5) for _ in range(3)]
    assert [e.payload()["delta"] for e in received if e] == ["1", "2", "3"]


async def requested(fake: FakeOpenAIServer) -> bool:
    """Whether the fake received a request within `STRETCHED_SECONDS`."""
    deadline = time.monotonic() + STRETCHED_SECONDS
    while not fake.stats.requests and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return len(fake.stats.requests) == 1


async def test_the_providers_request_does_not_wait_for_the_heartbeat(
    app: Quart, settings: Settings, tmp_path: Path
) -> None:
    """The worker sends the provider's request while it sets the task's heartbeat, not
    after that round trip: with Redis paused once the task is queued, the request still
    reaches the provider (before, it waited for Redis), and the answer completes once
    Redis is back."""
    async with (
        fake_openai_server(tokens=3) as fake,
        running_private_redis(tmp_path / "redis") as server,
    ):
        configured = with_models(settings, fake.base_url)
        configure_registry(configured)
        # No socket timeout: a paused Redis holds every command until it resumes.
        redis = ArqRedis.from_url(server.url)
        assert server.process is not None
        try:
            account = await create_account(settings, credits=100, password=False)
            session = await make_session(account, CHEAP)
            user = await User.get(id=account.id)
            parts = [{"type": "text", "text": "Hi"}]
            task = await tasks.create_task(
                user, session.id, parts, redis=redis, settings=configured
            )
            await redis.ping()  # the connection the heartbeat's SET will take is open
            os.kill(server.process.pid, signal.SIGSTOP)
            job = asyncio.create_task(
                generate_answer({"redis": redis, "settings": configured}, task.id)
            )
            assert await requested(fake), "the provider's request waited for Redis"
            os.kill(server.process.pid, signal.SIGCONT)
            assert await asyncio.wait_for(job, 30) == "succeeded"
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
            await redis.aclose()
            await close_registry()
            configure_registry(settings)
