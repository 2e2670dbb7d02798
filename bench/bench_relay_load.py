"""The worker's relay path under load, fixed window against load-adaptive, in one process.

End-to-end figures (bench/bench_coalescing.py) move with whatever else shares the VM.
This runs the chat worker's per-token path alone: N generations at once, each a paced
60-token upstream (50 tokens/s, absolute deadlines like the fake provider), relayed by
`Relay` into its task stream through one shared `EventWriter` (real Redis XADDs, batched
as in the worker), with the old fixed window (TASK_COALESCE_MS) and with the
load-adaptive one (`CoalesceWindow` following the generations running), alternating,
several rounds. It prints this process's CPU per answer (`time.process_time`), token
events per answer and the longest gap between a stream's events, and the ratio.

The web process's per-event work (XREAD dispatch, SSE frame, socket write) scales with
the same event count, so the events ratio is also the ratio of its per-token part.

Usage: python -m bench.bench_relay_load [--streams 100,500] [--rounds 3]
Needs Redis at REDIS_URL (default redis://127.0.0.1:6379/8).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis

from backend.providers.base import Delta, StreamEvent
from backend.settings import Settings
from backend.streams.event_writer import EventWriter
from backend.streams.task_stream import TaskStream
from workers.jobs.coalescing import CoalesceWindow
from workers.jobs.relay import Relay

TOKENS = 60
RATE = 50.0


async def paced(start: float) -> AsyncIterator[StreamEvent]:
    loop = asyncio.get_running_loop()
    for index in range(TOKENS):
        delay = start + index / RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield Delta(f"tok{index} ")


async def run_level(
    redis: aioredis.Redis, streams: int, rule: CoalesceWindow | None
) -> tuple[float, float, float]:
    """CPU ms per answer, events per answer, p99 of each answer's longest gap (ms), with
    `rule` following the generations running, or (None) the old fixed window."""
    writer = EventWriter(redis, outage_tolerance_seconds=1.0)
    prefix = f"bench-relay-{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_prefix=prefix)
    running = [0]
    window: Callable[[], float] | float = (
        rule.following(lambda: running[0]) if rule else settings.task_coalesce_ms / 1000
    )
    events: list[int] = []
    gaps: list[float] = []

    async def generation(index: int) -> None:
        stream = TaskStream.for_task(redis, settings, f"t{index}", writer)
        sent: list[float] = []

        async def send(text: str) -> None:
            sent.append(time.perf_counter())
            await stream.append_token(text)

        # staggered starts, as answers begin in a live service
        await asyncio.sleep(index / streams * TOKENS / RATE)
        running[0] += 1
        try:
            loop = asyncio.get_running_loop()
            await Relay(paced(loop.time()), send, window=window).run()
        finally:
            running[0] -= 1
        events.append(len(sent))
        gaps.append(max((b - a for a, b in itertools.pairwise(sent)), default=0) * 1000)

    cpu = time.process_time()
    await asyncio.gather(*(generation(i) for i in range(streams)))
    cpu = time.process_time() - cpu
    await writer.aclose()
    async for key in redis.scan_iter(f"{prefix}:*", count=1000):
        await redis.delete(key)
    gaps.sort()
    return cpu * 1000 / streams, statistics.mean(events), gaps[int(0.99 * (len(gaps) - 1))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="100,500")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    redis = aioredis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8"))
    defaults = Settings()
    rule = CoalesceWindow.from_settings(defaults)
    for streams in (int(n) for n in args.streams.split(",")):
        figures: dict[str, list[tuple[float, float, float]]] = {"old": [], "new": []}
        for _ in range(args.rounds):
            figures["old"].append(await run_level(redis, streams, None))
            figures["new"].append(await run_level(redis, streams, rule))
        old, new = (
            [statistics.median(x[i] for x in figures[k]) for i in range(3)] for k in ("old", "new")
        )
        print(
            f"{streams} streams: CPU per answer {old[0]:.2f} -> {new[0]:.2f} ms "
            f"({new[0] / old[0]:.2f}x); events per answer {old[1]:.1f} -> {new[1]:.1f} "
            f"({new[1] / old[1]:.2f}x); longest gap p99 {old[2]:.0f} -> {new[2]:.0f} ms",
            flush=True,
        )
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
