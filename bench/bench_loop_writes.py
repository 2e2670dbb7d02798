"""An answer's three SQLite writes on the event loop's own connection
(backend/models/loop_writes.py) against the hop to aiosqlite's thread, in one process.

Each round, each side in turn records `--runs` answers (the web's creation transaction:
hold, user message, task), claims them (the worker's UPDATE … RETURNING) and settles
them (transition, reservation settled with a refund, assistant message), each step
timed apart; CPU of this process (`process_time`, aiosqlite's thread included) and wall
time are divided by the calls. "old" is the same code with `loop_writes.writer` finding
no connection, i.e. the path before (and the fallback's). At the end, the WAL's size in
pages after all these answers, most written where commits never checkpoint.

Usage: python -m bench.bench_loop_writes [--rounds N] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from unittest import mock

from backend.database import close_database, open_database
from backend.models import Assistant, ChatSession, Task, User, loop_writes
from backend.models.answer_writes import record, settle
from backend.models.ids import new_id
from backend.models.task_claim import claim_queued
from bench.bench_answer_paths import new_ending, new_task
from bench.service import migrated_database

STEPS = ("record", "claim", "settle")


async def timed(calls: list[Callable[[], Awaitable[object]]]) -> tuple[float, float]:
    started, clock = time.process_time(), time.perf_counter()
    for call in calls:
        assert await call()
    return time.process_time() - started, time.perf_counter() - clock


async def run(rounds: int, runs: int) -> None:
    user = await User.create(username=f"bench{new_id()[:8]}", credits=10**9)
    assistant = await Assistant.create(owner_id=user.id, name="bench", llm={"model_name": "m"})
    session = await ChatSession.create(assistant_id=assistant.id, user_id=user.id)
    cpu = {(side, step): 0.0 for side in ("old", "new") for step in STEPS}
    wall = dict(cpu)
    for round_ in range(rounds + 1):  # the first round warms both sides up, uncounted
        for side in ("old", "new"):
            hop = mock.patch.object(loop_writes, "writer", lambda client: None)
            with hop if side == "old" else nullcontext():
                news = [new_task(user, session.id, 700) for _ in range(runs)]
                endings = [new_ending(new) for new in news]
                steps = {
                    "record": [lambda new=new: record(new) for new in news],
                    "claim": [lambda new=new: claim_queued(new.task_id) for new in news],
                    "settle": [lambda ending=ending: settle(ending) for ending in endings],
                }
                for step in STEPS:
                    spent, took = await timed(steps[step])
                    if round_:
                        cpu[side, step] += spent
                        wall[side, step] += took
    calls = rounds * runs
    print(
        f"{'write (per call)':<22} {'CPU old':>8} {'new':>8} µs {'ratio':>6}   wall old, new, ratio"
    )
    for step in STEPS:
        old, new = cpu["old", step] / calls * 1e6, cpu["new", step] / calls * 1e6
        old_wall, new_wall = wall["old", step] / calls * 1e6, wall["new", step] / calls * 1e6
        print(
            f"{step:<22} {old:>8.1f} {new:>8.1f} µs {new / old:>6.2f}x"
            f"   {old_wall:>8.1f} {new_wall:>8.1f} µs {new_wall / old_wall:>6.2f}x"
        )
    old, new = (sum(cpu[side, step] for step in STEPS) / calls * 1e6 for side in ("old", "new"))
    print(f"{'an answer (the three)':<22} {old:>8.1f} {new:>8.1f} µs {new / old:>6.2f}x")
    answers = 2 * (rounds + 1) * runs
    print(f"answers written: {answers}, tasks: {await Task.all().count()}")


def wal_pages(path: str) -> int:
    wal = path + "-wal"
    return os.path.getsize(wal) // 4096 if os.path.exists(wal) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with migrated_database("", log_level="WARNING") as settings:
        path = str(settings.data_dir / "sluice.sqlite3")

        async def go() -> None:
            await open_database(settings)
            try:
                await run(args.rounds, args.runs)
                print(f"WAL after the run: {wal_pages(path)} pages of 4 KiB (at most)")
            finally:
                await close_database()

        asyncio.run(go())


if __name__ == "__main__":
    main()
