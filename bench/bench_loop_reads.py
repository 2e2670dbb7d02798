"""The per-request reads (backend/models/lean_reads.py) on SQLite through aiosqlite's thread,
as before, next to the same reads on the event loop's own read-only connection
(backend/models/loop_reads.py), alternating round by round in one process.

Each read, then an answer's reads together (the caller's user row, the session with its
assistant, the task as its stream opens, a 40-message history), runs `--runs` times per
round; the CPU of this process (`process_time`, aiosqlite's thread included) and the wall
time are divided by the runs. "old" is the same code with `loop_reads.rows` answering
None, so every read goes to Tortoise's client as it did before.

Usage: python -m bench.bench_loop_reads [--rounds N] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=400)
    args = parser.parse_args()
    with migrated_database("", secret_key="bench-secret-key-long-enough-for-hs256") as settings:

        async def go() -> None:
            await open_database(settings)
            try:
                await run(args.rounds, args.runs)
            finally:
                await close_database()

        asyncio.run(go())


if __name__ == "__main__":
    main()
