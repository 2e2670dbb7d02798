"""The per-request reads (backend/models/lean_reads.py) on SQLite through aiosqlite's thread,
as before, next to the same reads on the event loop's own read-only connection
(backend/models/loop_reads.py), alternating round by round in one process.

Each read, then an answer's reads together (the caller's user row, the session with its
assistant, the task as its stream opens, a 40-message history), runs `--runs` times per
round; the CPU of this process (`process_time`, aiosqlite's thread included) and the wall
time are divided by the runs. "old" is the same code with `loop_reads.rows` answering
None, so every read goes to Tortoise's client as it did before.

Then whole requests through the app, in-process through raw ASGI (no socket, no
Hypercorn), old and new alternating round by round the same way: an authenticated
`GET /api/v1/users/me` (the user row) and a status poll `GET /api/v1/tasks/{id}` (the
user row and the task). Needs Redis (`--redis-url`, default $REDIS_URL; skipped without).

Usage: python -m bench.bench_loop_reads [--rounds N] [--runs N] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any
from unittest import mock

from backend.database import close_database, open_database
from backend.models import ApiKey, Assistant, ChatSession, Message, Task, User, loop_reads
from backend.models.chats import Role
from backend.models.ids import new_id
from backend.models.lean_reads import (
    history_page,
    live_api_key,
    owned_session,
    owned_task,
    user_by_id,
)
from backend.settings import Settings
from bench.service import migrated_database

HISTORY = 40


def through_aiosqlite(client: Any, sql: str, values: list[Any]) -> None:
    return None


async def measure(name: str, call: Callable[[], Awaitable], rounds: int, runs: int) -> None:
    cpu = {"old": 0.0, "new": 0.0}
    wall = {"old": 0.0, "new": 0.0}
    for _ in range(rounds):
        for label in ("old", "new"):
            hop = label == "old"
            with mock.patch.object(loop_reads, "rows", through_aiosqlite) if hop else nullcontext():
                started, clock = time.process_time(), time.perf_counter()
                for _ in range(runs):
                    await call()
                cpu[label] += time.process_time() - started
                wall[label] += time.perf_counter() - clock
    old, new = (cpu[k] / (rounds * runs) * 1e6 for k in ("old", "new"))
    old_wall, new_wall = (wall[k] / (rounds * runs) * 1e6 for k in ("old", "new"))
    print(
        f"{name:<44} {old:>8.1f} {new:>8.1f} µs {new / old:>6.2f}x"
        f"   wall {old_wall:>8.1f} {new_wall:>8.1f} µs {new_wall / old_wall:>6.2f}x"
    )


async def run(rounds: int, runs: int) -> None:
    user = await User.create(username=f"bench{new_id()[:8]}", credits=10**9)
    assistant = await Assistant.create(owner_id=user.id, name="bench", llm={"model_name": "m"})
    session = await ChatSession.create(assistant_id=assistant.id, user_id=user.id)
    for index in range(HISTORY):
        role = Role.USER if index % 2 == 0 else Role.ASSISTANT
        text = f"Message {index}: " + "a story about a lighthouse keeper and the sea " * 6
        await Message.create(
            session_id=session.id, role=role, content=[{"type": "text", "text": text}]
        )
    api_key = await ApiKey.create(
        id=new_id(), user_id=user.id, name="bench", prefix="sk-b", key_hash=new_id() * 2
    )
    task = await Task.create(user_id=user.id, model="m", request={"messages": []})

    async def answer() -> None:
        await user_by_id(user.id)
        await owned_session(session.id, user.id)
        await owned_task(task.id, user.id)
        await history_page(session.id, 64, 0)

    print(f"{'read (per call, CPU of this process)':<44} {'old':>8} {'new':>8}    {'ratio':>6}")
    await measure("user row (every JWT request)", lambda: user_by_id(user.id), rounds, runs)
    await measure("API key with its user", lambda: live_api_key(api_key.key_hash), rounds, runs)
    await measure(
        "session with its assistant", lambda: owned_session(session.id, user.id), rounds, runs
    )
    await measure("task of the user's", lambda: owned_task(task.id, user.id), rounds, runs)
    await measure(
        f"history page of {HISTORY} messages",
        lambda: history_page(session.id, 64, 0),
        rounds,
        runs,
    )
    await measure("an answer's reads (the four above)", answer, rounds, runs)


def scope_of(path: str, token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
        "state": {},
    }


async def run_requests(settings: Settings, rounds: int, runs: int) -> None:
    from backend.app import create_app
    from backend.services.tokens import issue_access_token

    app = create_app(settings)
    await app.startup()
    try:
        user = await User.create(username=f"bench{new_id()[:8]}", credits=10**9)
        task = await Task.create(user_id=user.id, model="m", request={"messages": []})
        token = issue_access_token(user, settings)

        def request(path: str) -> Callable[[], Awaitable]:
            async def once() -> None:
                sent: list[dict] = []
                asked: list[bool] = []
                answered = asyncio.Event()

                async def receive() -> dict:
                    if not asked:  # the body, then (as a server does) the disconnect
                        asked.append(True)
                        return {"type": "http.request", "body": b"", "more_body": False}
                    await answered.wait()
                    return {"type": "http.disconnect"}

                async def send(message: dict) -> None:
                    sent.append(message)
                    if message["type"] == "http.response.body" and not message.get("more_body"):
                        answered.set()

                await app(scope_of(path, token), receive, send)
                assert sent[0]["status"] == 200, sent

            return once

        for path in ("/api/v1/users/me", f"/api/v1/tasks/{task.id}"):
            for _ in range(50):  # first requests warm the app's caches: in neither figure
                await request(path)()
        print(f"{'request (per request, whole app in-process)':<44}")
        await measure("GET /api/v1/users/me", request("/api/v1/users/me"), rounds, runs)
        await measure("GET /api/v1/tasks/{id}", request(f"/api/v1/tasks/{task.id}"), rounds, runs)
    finally:
        await app.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    args = parser.parse_args()
    with migrated_database(
        "",
        secret_key="bench-secret-key-long-enough-for-hs256",
        redis_url=args.redis_url or "redis://127.0.0.1:6379/0",
        redis_prefix=f"bench-reads-{new_id()[:8]}",
        log_level="WARNING",
    ) as settings:

        async def go() -> None:
            await open_database(settings)
            try:
                await run(args.rounds, args.runs)
            finally:
                await close_database()
            if args.redis_url:
                await run_requests(settings, args.rounds, args.runs)

        asyncio.run(go())


if __name__ == "__main__":
    main()
