"""Cancel mid-stream over real sockets: terminal `cancelled` within a second, and only the
tokens produced are charged."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from arq.constants import job_key_prefix

from backend.models import Task
from backend.models.tasks import TaskState
from backend.providers.registry import ModelRegistry
from backend.providers.tokens import count_tokens
from backend.services.pricing import price
from backend.settings import Settings
from tests.support.accounts import create_account
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.sse_client import events
from tests.support.task_models import SLOW
from tests.support.task_stack import TaskStack
from tests.test_tasks import make_session


async def test_cancel_mid_stream_stops_within_a_second_and_charges_produced_tokens(
    stack: TaskStack, settings: Settings
) -> None:
    account = await create_account(settings, credits=1000, password=False)
    session = await make_session(account, SLOW)
    async with stack.client(account) as client:
        created = await client.post(
            "/api/v1/tasks", json={"session_id": session.id, "question": "Go"}
        )
        assert created.status_code == 201
        task_id = created.json()["data"]["task_id"]
        tokens: list[str] = []
        cancelled_at = None
        async with client.stream("GET", f"/api/v1/tasks/{task_id}/stream") as response:
            assert response.status_code == 200
            async for frame in events(response):
                if frame.event == "token":
                    tokens.append(frame.data["delta"])
                    if len(tokens) == 3 and cancelled_at is None:
                        cancelled_at = time.perf_counter()
                        cancel = await client.post(f"/api/v1/tasks/{task_id}/cancel")
                        assert cancel.status_code == 200
                elif frame.terminal:
                    ended_at = time.perf_counter()
                    terminal = frame
                    break
        again = await client.post(f"/api/v1/tasks/{task_id}/cancel")

    assert terminal.event == "cancelled"
    assert ended_at - cancelled_at < 1.0
    assert again.status_code == 409

    produced = "".join(tokens)
    task = await Task.get(id=task_id)
    assert task.state == TaskState.CANCELLED
    assert task.completion_tokens == count_tokens(produced) == terminal.data["completion_tokens"]
    assert task.completion_tokens < 400
    spec = ModelRegistry(stack.settings).get(SLOW)
    expected = price(spec, task.prompt_tokens, task.completion_tokens)
    assert terminal.data["cost"] == task.cost == expected
    assert await balance_of(account.id) == 1000 - expected
    await assert_ledger_balanced()


async def test_cancel_before_a_worker_starts_it_charges_nothing(
    stack: TaskStack, settings: Settings
) -> None:
    account = await create_account(settings, credits=1000, password=False)
    session = await make_session(account, SLOW)
    worker = stack.workers.pop()
    worker.stop()
    try:
        async with stack.client(account) as client:
            created = await client.post(
                "/api/v1/tasks", json={"session_id": session.id, "question": "Go"}
            )
            task_id = created.json()["data"]["task_id"]
            cancel = await client.post(f"/api/v1/tasks/{task_id}/cancel")
            assert cancel.json()["data"]["status"] == "cancelled"
            async with client.stream("GET", f"/api/v1/tasks/{task_id}/stream") as response:
                frames = [frame async for frame in events(response)]
        probe = aioredis.from_url(settings.redis_url)
        try:
            # The job is still queued: no worker has seen it yet.
            assert await probe.exists(job_key_prefix + task_id)
        finally:
            await probe.aclose()
    finally:
        await stack.start_worker()
    assert [f.event for f in frames] == ["cancelled"]
    assert frames[0].data["cost"] == 0
    assert await balance_of(account.id) == 1000
    # The restarted worker receives the job and must not start it.
    redis = aioredis.from_url(settings.redis_url)
    try:
        for _ in range(100):
            # arq deletes a job's key once a worker has run it.
            if not await redis.exists(job_key_prefix + task_id):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the restarted worker never ran the job")
    finally:
        await redis.aclose()
    task = await Task.get(id=task_id)
    assert task.state == TaskState.CANCELLED and task.started_at is None
    await assert_ledger_balanced()
