"""Old next to new in one process: the two sides take turns, so the VM's drift during a
run weighs on both alike."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


async def cpu_alternating(
    old: Callable[[], Awaitable[object]],
    new: Callable[[], Awaitable[object]],
    rounds: int,
    runs: int,
) -> dict[str, float]:
    """CPU seconds of this process spent by each side ("old", "new"): `rounds` turns of
    `runs` awaited calls each, the sides alternating."""
    spent = {"old": 0.0, "new": 0.0}
    for _ in range(rounds):
        for label, work in (("old", old), ("new", new)):
            started = time.process_time()
            for _ in range(runs):
                await work()
            spent[label] += time.process_time() - started
    return spent


async def us_per_call(
    old: Callable[[], Awaitable[object]],
    new: Callable[[], Awaitable[object]],
    rounds: int,
    runs: int,
) -> tuple[float, float]:
    """`cpu_alternating`'s figures as µs of CPU per call: (old, new)."""
    spent = await cpu_alternating(old, new, rounds, runs)
    calls = rounds * runs
    return spent["old"] / calls * 1e6, spent["new"] / calls * 1e6
