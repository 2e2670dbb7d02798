"""Load-adaptive coalescing end to end: Hypercorn, a real arq chat worker, real Redis.

The worker's window is TASK_COALESCE_MS (4 ms) while it runs at most 2 generations and
widens to 100 ms from 6; its slow model sends 20 tokens at 20 per second (one every
50 ms). One answer alone arrives token by token; eight at once arrive in fewer events
that carry several tokens each, with every answer's text intact and the first token
still alone.
"""

from __future__ import annotations

import asyncio

import httpx

from backend.settings import Settings
from tests.support.accounts import create_account
from tests.support.sse_client import Frame, events
from tests.support.task_models import SLOW
from tests.support.task_stack import TaskStack, stack_fixture
from tests.test_tasks import make_session

TOKENS = 20
ANSWER = [f"tok{i} " for i in range(TOKENS)]

stack = stack_fixture(
    "coalescing",
    slow_tokens=TOKENS,
    task_coalesce_ms=4.0,
    task_coalesce_max_ms=100.0,
    task_coalesce_idle_generations=2,
    task_coalesce_busy_generations=6,
)


async def deltas_of_one_answer(client: httpx.AsyncClient, session_id: str) -> list[str]:
    """The `delta` of each token event, in order, up to `done`."""
    body = {"session_id": session_id, "question": "Count", "stream": True}
    received: list[Frame] = []
    async with client.stream("POST", "/api/v1/tasks", json=body) as response:
        assert response.status_code == 200
        async for frame in events(response):
            received.append(frame)
            if frame.terminal:
                break
    assert received[-1].event == "done"
    assert all(frame.id for frame in received)
    return [frame.data["delta"] for frame in received if frame.event == "token"]


async def test_a_lone_answer_arrives_one_token_per_event(
    stack: TaskStack, settings: Settings
) -> None:
    account = await create_account(settings, credits=100, password=False)
    session = await make_session(account, SLOW)
    async with stack.client(account) as client:
        deltas = await deltas_of_one_answer(client, session.id)
    assert deltas == ANSWER


async def test_many_concurrent_answers_carry_several_tokens_per_event(
    stack: TaskStack, settings: Settings
) -> None:
    account = await create_account(settings, credits=10_000, password=False)
    sessions = [await make_session(account, SLOW) for _ in range(8)]
    limits = httpx.Limits(max_connections=20)
    async with stack.client(account, limits=limits) as client:
        answers = await asyncio.gather(*(deltas_of_one_answer(client, s.id) for s in sessions))

    for deltas in answers:
        assert "".join(deltas) == "".join(ANSWER), "the text is intact"
        assert deltas[0] == ANSWER[0], "the first token goes alone, at once"
        assert any(len(delta.split()) >= 2 for delta in deltas), deltas
    events = sum(len(deltas) for deltas in answers)
    assert events <= 0.6 * TOKENS * len(answers), f"{events} events for {8 * TOKENS} tokens"
