"""The careful client of bench_chaos: what a real app does when the service has a fault.

A submit answered 503 (or cut before the task id arrived) is sent again after half a
second; a stream cut before its terminal event is resumed from the last event id it saw
(`Last-Event-ID`), as EventSource does; everything it received is kept, so the bench can
count duplicated events and compare the streamed text with what the database stored.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

from tests.support.own_database import sign_in
from tests.support.sse_client import events
from tests.support.task_models import CHEAP

RETRY_SECONDS = 0.5


@dataclass
class Answer:
    task_id: str | None = None
    terminal: str | None = None  # the first terminal event's name
    terminals: int = 0
    duplicate_ids: int = 0
    text: str = ""
    last_id: str | None = None
    resubmits: int = 0
    resumes: int = 0
    note: str = ""
    seen: set[str] = field(default_factory=set)


async def open_session(base_url: str) -> tuple[dict[str, str], str]:
    """A new user with an assistant and a chat session: (auth headers, session id)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        headers = await sign_in(client)
        chat = await client.post(
            "/api/v1/chats", json={"name": "chaos", "llm": {"model_name": CHEAP}}, headers=headers
        )
        assert chat.status_code == 201, chat.text
        session = await client.post(
            f"/api/v1/chats/{chat.json()['data']['id']}/sessions",
            json={"name": "chaos"},
            headers=headers,
        )
        assert session.status_code == 201, session.text
        return headers, session.json()["data"]["id"]


async def consume(response: httpx.Response, answer: Answer) -> None:
    async for frame in events(response):
        assert frame.id is not None
        if frame.id in answer.seen:
            answer.duplicate_ids += 1
            continue
        answer.seen.add(frame.id)
        answer.last_id = frame.id
        if frame.event == "token":
            answer.text += frame.data.get("delta", "")
        if frame.terminal:
            if frame.event != "done" and isinstance(frame.data, dict):
                answer.note = f"{frame.data.get('code')}: {frame.data.get('message')}"
            answer.terminals += 1
            answer.terminal = answer.terminal or frame.event
            return


async def submit(client: httpx.AsyncClient, session_id: str, answer: Answer) -> None:
    body = {"session_id": session_id, "question": "Say something.", "stream": True}
    while answer.task_id is None:
        try:
            async with client.stream("POST", "/api/v1/tasks", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    answer.resubmits += 1
                    answer.note = f"submit answered {response.status_code}"
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                answer.task_id = response.headers["X-Task-ID"]
                await consume(response, answer)
        except httpx.TransportError:
            if answer.task_id is None:
                answer.resubmits += 1
            await asyncio.sleep(RETRY_SECONDS)


async def resume(client: httpx.AsyncClient, answer: Answer) -> None:
    while answer.terminal is None:
        answer.resumes += 1
        headers = {"Last-Event-ID": answer.last_id} if answer.last_id else {}
        try:
            async with client.stream(
                "GET", f"/api/v1/tasks/{answer.task_id}/stream", headers=headers
            ) as response:
                if response.status_code == 410:
                    answer.note = "410: the stream was consumed, its terminal event unseen"
                    return
                if response.status_code != 200:
                    await response.aread()
                    answer.note = f"resume answered {response.status_code}"
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                await consume(response, answer)
        except httpx.TransportError:
            await asyncio.sleep(RETRY_SECONDS)


async def ask(base_url: str, headers: dict[str, str], session_id: str, deadline: float) -> Answer:
    """One answer, submitted and followed to its terminal event or `deadline` seconds."""
    answer = Answer()
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        try:
            await asyncio.wait_for(submit(client, session_id, answer), deadline)
            left = deadline - (time.monotonic() - started)
            await asyncio.wait_for(resume(client, answer), max(left, 0.1))
        except TimeoutError:
            answer.note = f"no terminal event within {deadline:g} s ({answer.note})"
    return answer
