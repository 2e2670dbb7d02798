"""A hand-written SSE reader over httpx: splits the byte stream on blank lines (`\\n\\n`)
the way simple clients (and WeChat's chunked readers) do, so it also proves the framing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data_lines: list[str] = field(default_factory=list)
    comment: str | None = None
    retry: int | None = None

    @property
    def data(self) -> Any:
        return json.loads("\n".join(self.data_lines))

    @property
    def terminal(self) -> bool:
        return self.event in ("done", "error", "cancelled")


def parse_frame(block: str) -> Frame:
    frame = Frame()
    for line in block.split("\n"):
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            frame.comment = value
        elif name == "id":
            frame.id = value
        elif name == "event":
            frame.event = value
        elif name == "data":
            frame.data_lines.append(value)
        elif name == "retry":
            frame.retry = int(value)
    return frame


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """Frames as they arrive; raw bytes are split only on `\\n\\n`."""
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            yield parse_frame(block)


async def events(response: httpx.Response) -> AsyncIterator[Frame]:
    """Only the task's stream events (each has an `id:`): heartbeat comments and the
    opening frame (`retry:`, and `event: task` on streams a POST started) are skipped."""
    async for frame in frames(response):
        if frame.id is not None:
            yield frame


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ask_task(client: httpx.AsyncClient, session_id: str, question: str) -> list[Frame]:
    """A streamed `POST /api/v1/tasks` turn: every event up to and including the
    terminal one."""
    body = {"session_id": session_id, "question": question, "stream": True}
    received = []
    async with client.stream("POST", "/api/v1/tasks", json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for frame in events(response):
            received.append(frame)
            if frame.terminal:
                break
    return received
