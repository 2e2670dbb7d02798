"""Chat turns over real sockets: Hypercorn, a real arq chat worker process, the fake upstream."""

from __future__ import annotations

import asyncio

import httpx

from backend.models import CreditReservation, Message, Task
from backend.models.credits import ReservationState
from backend.models.tasks import TaskState
from backend.settings import Settings
from tests.support.accounts import create_account
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.sse_client import Frame, events
from tests.support.task_models import CHEAP
from tests.support.task_stack import TaskStack
from tests.test_tasks import make_session


async def read_until_terminal(response: httpx.Response) -> list[Frame]:
    received = []
    async for frame in events(response):
        received.append(frame)
        if frame.terminal:
            break
    return received


async def test_full_chat_turn_end_to_end(stack: TaskStack, settings: Settings) -> None:
    account = await create_account(settings, credits=100, password=False)
    session = await make_session(account, CHEAP)
    body = {"session_id": session.id, "question": "Hello there", "stream": True}
    async with (
        stack.client(account) as client,
        client.stream("POST", "/api/v1/tasks", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        task_id = response.headers["X-Task-ID"]
        frames = await read_until_terminal(response)

    assert [f.event for f in frames[-2:]] == ["usage", "done"]
    assert {f.event for f in frames[:-2]} == {"token"}
    text = "".join(f.data["delta"] for f in frames[:-2])
    assert text == "".join(f"tok{i} " for i in range(20))
    assert all(f.id for f in frames)
    done = frames[-1].data

    message = await Message.get(id=done["message_id"])
    assert message.content == [{"type": "text", "text": text}]
    task = await Task.get(id=message.task_id)
    assert task.id == task_id
    async with stack.client(account) as client:
        status = (await client.get(f"/api/v1/tasks/{task.id}")).json()["data"]
    assert status["status"] == "succeeded"
    assert status["message_id"] == done["message_id"]
    assert status["cost"] == done["cost"] > 0
    assert status["usage"]["completion_tokens"] == 20
    assert status["queued_ms"] is not None and status["queued_ms"] < 1000
    assert await balance_of(account.id) == 100 - done["cost"]
    await assert_ledger_balanced()


async def test_fifty_concurrent_tasks_never_overdraw_and_settle_exactly(
    stack: TaskStack, settings: Settings
) -> None:
    """More tasks than the balance can hold at once: some get 402, none overdraws, and
    every accepted task is settled to exactly its cost."""
    start_balance = 13  # room for two holds at a time: most concurrent asks get 402
    account = await create_account(settings, credits=start_balance, password=False)
    sessions = [await make_session(account, CHEAP) for _ in range(50)]
    lowest = start_balance
    watching = True

    async def watch_balance() -> None:
        nonlocal lowest
        while watching:
            lowest = min(lowest, await balance_of(account.id))
            await asyncio.sleep(0.01)

    async def turn(client: httpx.AsyncClient, session_id: str) -> tuple[int, list[Frame]]:
        body = {"session_id": session_id, "question": "Count", "stream": True}
        async with client.stream("POST", "/api/v1/tasks", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return response.status_code, []
            return 200, await read_until_terminal(response)

    watcher = asyncio.create_task(watch_balance())
    limits = httpx.Limits(max_connections=100)
    async with stack.client(account, limits=limits) as client:
        results = await asyncio.gather(*(turn(client, s.id) for s in sessions))
    watching = False
    await watcher

    statuses = [status for status, _ in results]
    assert set(statuses) == {200, 402}, statuses
    assert statuses.count(200) >= 2
    done = [frames[-1] for status, frames in results if status == 200]
    assert all(frame.event == "done" for frame in done)
    charged = sum(frame.data["cost"] for frame in done)

    tasks = await Task.filter(user_id=account.id)
    assert len(tasks) == statuses.count(200)
    assert all(task.state == TaskState.SUCCEEDED for task in tasks)
    assert sum(task.cost for task in tasks) == charged
    held = await CreditReservation.filter(user_id=account.id, state=ReservationState.RESERVED)
    assert held == []
    assert lowest >= 0
    assert await balance_of(account.id) == start_balance - charged
    await assert_ledger_balanced()


async def test_added_queue_latency_is_small(stack: TaskStack, settings: Settings) -> None:
    """The worker picks a task up within a few poll delays, not arq's default 0.5 s."""
    account = await create_account(settings, credits=100, password=False)
    session = await make_session(account, CHEAP)
    queued = []
    async with stack.client(account) as client:
        for _ in range(5):
            body = {"session_id": session.id, "question": "Hi", "stream": True}
            async with client.stream("POST", "/api/v1/tasks", json=body) as response:
                frames = await read_until_terminal(response)
            task = await Task.get(message_id=frames[-1].data["message_id"])
            queued.append((task.started_at - task.created_at).total_seconds())
    assert sorted(queued)[2] < 0.1, queued
