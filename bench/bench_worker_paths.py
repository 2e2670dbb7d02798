"""The chat worker's own paths issue 16's fourth pass changed, old next to new in one
process, alternating rounds (CPU of this process, `time.process_time`), so the ratio
holds whatever else the VM runs:

- a batch of token appends: redis-py's pipeline (the EventWriter before) against
  `DirectPipeline` (packed once, a held connection, one timeout per round trip), for
  batches of 1 and of 20 appends (an idle worker, and one at ~100 streams);
- a generation's heartbeat at its start and end: the watch's own SET and DEL (two
  round trips an answer) against the new watch, which beats a new task in its next
  tick's pipeline and drops it with its next (a few hundred tasks a second);
- an answer's ending (the APPEND_ENDING script): its own EVAL against riding the
  appends' round trip;
- a worker's poll when a job is enqueued: arq's ZRANGEBYSCORE and our claims against
  `POLL_AND_CLAIM`, one script, with 100 jobs in progress;
- reading the provider, per token: aiohttp's per-read timeout (a timer rescheduled on
  every chunk) against `openai_sse`'s idle watchdog (one timer per timeout period).

Usage: python -m bench.bench_worker_paths [--rounds N] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from backend.connections import redis_pool
from backend.providers import openai_sse
from backend.providers.base import Usage
from backend.providers.openai_sse import ChatStreamClient
from backend.settings import get_settings
from backend.streams.direct_pipeline import DirectPipeline
from backend.streams.endings import APPEND_ENDING
from backend.streams.event_writer import EventWriter
from bench.service import fake_upstream
from workers.job_claims import CLAIM, POLL_AND_CLAIM, RETRY_KEY_SECONDS

ROOT = Path(__file__).resolve().parents[1]
TOKEN = {"type": "token", "data": '{"delta": " word"}'}


async def cpu_of(work: Callable[[], Awaitable[int]], times: int) -> tuple[float, int]:
    """CPU seconds of this process for `times` runs of `work`; and what it counted."""
    done = 0
    started = time.process_time()
    for _ in range(times):
        done += await work()
    return time.process_time() - started, done


def line(name: str, old: float, new: float, unit: str) -> None:
    print(f"{name:<52} {old:>9.1f} {new:>9.1f} {unit:<9} {new / old:>6.2f}x")


async def compare(
    name: str, ways: dict[str, Callable[[], Awaitable[int]]], rounds: int, times: int, unit: str
) -> None:
    totals = {way: [0.0, 0] for way in ways}
    for _ in range(rounds):
        for way, work in ways.items():
            seconds, count = await cpu_of(work, times)
            totals[way][0] += seconds
            totals[way][1] += count
    old, new = (totals[w][0] / totals[w][1] * 1e6 for w in ways)
    line(name, old, new, unit)


async def writer_paths(redis: Redis, rounds: int) -> None:
    pooled = EventWriter(redis, own_connection=False)
    direct = EventWriter(redis, own_connection=True)
    keys = [f"bench-writer:{uuid.uuid4().hex}:{i}" for i in range(20)]

    def batch_of(writer: EventWriter, size: int) -> Callable[[], Awaitable[int]]:
        async def work() -> int:
            await asyncio.gather(
                *(writer.append(keys[i], TOKEN, max_events=1000) for i in range(size))
            )
            return 1

        return work

    try:
        for size in (1, 20):
            await compare(
                f"append batch of {size}, CPU per round trip",
                {"pipeline": batch_of(pooled, size), "direct": batch_of(direct, size)},
                rounds,
                400,
                "µs",
            )
    finally:
        await direct.aclose()
        await redis.delete(*keys)


async def watch_paths(redis: Redis, rounds: int) -> None:
    """An answer's heartbeat SET and DEL while the writer carries 20 streams' appends;
    and one watch tick over 100 running tasks (EXISTS of each cancel flag)."""
    writer = EventWriter(redis, own_connection=True)
    key = f"bench-watch:{uuid.uuid4().hex}"
    keys = [f"{key}:{i}" for i in range(20)]

    def appends() -> list[Awaitable[object]]:
        return [writer.append(k, TOKEN, max_events=1000) for k in keys]

    async def appends_alone() -> int:
        await asyncio.gather(*appends())
        return 1

    async def own_round_trips() -> int:  # the watch before: a command each
        await asyncio.gather(*appends())
        await redis.set(f"{key}:hb", "1", ex=5)
        await redis.delete(f"{key}:hb")
        return 1

    async def riding() -> int:
        await asyncio.gather(
            *appends(),
            writer.command("SET", f"{key}:hb", "1", "EX", 5),
            writer.command("DEL", f"{key}:hb"),
        )
        return 1

    def ending() -> tuple[object, ...]:  # a new stream's ending, expiring in a minute
        return (APPEND_ENDING, 1, f"{key}:end:{uuid.uuid4().hex}", 1000, 60, "error", "{}")

    async def ending_alone() -> int:  # the ending before: its own EVAL
        await asyncio.gather(*appends())
        await redis.eval(*ending())  # type: ignore[arg-type]
        return 1

    async def ending_riding() -> int:
        await asyncio.gather(*appends(), writer.command("EVAL", *ending()))
        return 1

    totals = {name: 0.0 for name in ("alone", "old", "new", "old end", "new end")}
    ways = (
        ("alone", appends_alone),
        ("old", own_round_trips),
        ("new", riding),
        ("old end", ending_alone),
        ("new end", ending_riding),
    )
    for _ in range(rounds):
        for name, work in ways:
            totals[name] += (await cpu_of(work, 300))[0]
    per = {name: seconds / (rounds * 300) * 1e6 for name, seconds in totals.items()}
    line(
        "an answer's heartbeat SET + DEL (beyond the appends)",
        per["old"] - per["alone"],
        per["new"] - per["alone"],
        "µs",
    )
    line(
        "an answer's ending script (beyond the appends)",
        per["old end"] - per["alone"],
        per["new end"] - per["alone"],
        "µs",
    )

    flags = [("EXISTS", f"{key}:cancel:{i}") for i in range(100)]
    direct = DirectPipeline(redis)

    async def redis_py_tick() -> int:
        async with redis.pipeline(transaction=False) as pipe:
            for command in flags:
                pipe.execute_command(*command)
            await pipe.execute()
        return 1

    async def direct_tick() -> int:
        await direct.execute(flags)
        return 1

    try:
        await compare(
            "watch tick over 100 tasks, CPU each",
            {"pipeline": redis_py_tick, "direct": direct_tick},
            rounds,
            200,
            "µs",
        )
    finally:
        await direct.aclose()
        await writer.aclose()
        await redis.delete(*keys)


async def poll_paths(redis: Redis, rounds: int) -> None:
    """A wake-up's poll with 100 jobs in progress in this worker and one new due job:
    arq's ZRANGEBYSCORE, then our claim of the others (their ids skipped client-side),
    against `POLL_AND_CLAIM` (one script)."""
    queue = f"bench-poll:{uuid.uuid4().hex}"
    running = {f"running-{i}": None for i in range(100)}
    await redis.zadd(queue, {job_id: 1 for job_id in running})
    await redis.mset({in_progress_key_prefix + job_id: b"1" for job_id in running})
    ttl = 60_000

    async def new_job() -> str:
        job_id = uuid.uuid4().hex
        await redis.zadd(queue, {job_id: 1})
        return job_id

    async def done(job_id: str) -> None:
        await redis.zrem(queue, job_id)
        await redis.delete(in_progress_key_prefix + job_id, retry_key_prefix + job_id)

    async def old_poll() -> tuple[float, int]:
        job_id = await new_job()
        started = time.process_time()
        ids = await redis.zrangebyscore(
            queue, min=float("-inf"), max=timestamp_ms(), start=0, num=500
        )
        others = [i.decode() for i in ids]
        others = [i for i in others if i not in running]
        async with redis.pipeline(transaction=False) as pipe:
            for other in others:
                pipe.eval(
                    CLAIM, 2, in_progress_key_prefix + other, queue, other, timestamp_ms(), ttl
                )
            scores = await pipe.execute()
        spent = time.process_time() - started
        await done(job_id)
        return spent, sum(score is not None for score in scores)

    async def new_poll() -> tuple[float, int]:
        job_id = await new_job()
        started = time.process_time()
        claimed = await redis.eval(
            POLL_AND_CLAIM,
            1,
            queue,
            timestamp_ms(),
            ttl,
            400,
            in_progress_key_prefix,
            500,
            job_key_prefix,
            retry_key_prefix,
            RETRY_KEY_SECONDS,
        )
        spent = time.process_time() - started
        await done(job_id)
        return spent, len(claimed) // 4

    totals = {"old": [0.0, 0], "new": [0.0, 0]}
    try:
        for _ in range(rounds):
            for name, poll in (("old", old_poll), ("new", new_poll)):
                for _ in range(200):
                    spent, claimed = await poll()
                    totals[name][0] += spent
                    totals[name][1] += claimed
        old, new = (totals[n][0] / totals[n][1] * 1e6 for n in ("old", "new"))
        line("poll claiming 1 job beside 100 running, CPU", old, new, "µs")
    finally:
        await redis.delete(queue, *(in_progress_key_prefix + job_id for job_id in running))


class AiohttpReadTimeout:
    """The read before: aiohttp's `sock_read` timer left on for the whole body."""

    def __init__(self, *_: object) -> None:
        pass

    def stop(self) -> None:
        pass


async def provider_paths(rounds: int) -> None:
    """60-token answers paced at 1,000 tokens/s (a chunk per socket read, as a model's
    stream arrives), 20 at a time, from the fake upstream in its own process."""
    async with fake_upstream(60, tokens_per_second=1000) as base_url:
        client = ChatStreamClient(
            base_url,
            "k",
            timeout=60,
            connect_timeout=10,
            max_retries=0,
            key_setting="K",
        )
        body = {
            "model": "fake-gpt",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
        }

        async def read_one() -> int:
            bursts = client.bursts(body, "bench", counted=lambda text: Usage(0, 0))
            return sum([sum(type(i) is str and bool(i) for i in b) async for b in bursts])

        def reading(watchdog: type) -> Callable[[], Awaitable[int]]:
            async def work() -> int:
                openai_sse.ReadWatchdog = watchdog  # type: ignore[attr-defined,misc]
                return sum(await asyncio.gather(*(read_one() for _ in range(20))))

            return work

        new = openai_sse.ReadWatchdog
        try:
            for _ in range(100):
                try:
                    await read_one()
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            await compare(
                "provider read, CPU per token (60-token answers)",
                {"aiohttp sock_read": reading(AiohttpReadTimeout), "watchdog": reading(new)},
                rounds,
                5,
                "µs",
            )
        finally:
            openai_sse.ReadWatchdog = new  # type: ignore[misc]
            await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    settings = get_settings()
    if args.redis_url:
        settings = settings.model_copy(update={"redis_url": args.redis_url})
    redis = redis_pool(settings)
    print(f"{'path':<52} {'old':>9} {'new':>9} {'unit':<9} {'ratio':>7}")
    try:
        await writer_paths(redis, args.rounds)
        await watch_paths(redis, args.rounds)
        await poll_paths(redis, args.rounds)
        await provider_paths(args.rounds)
    finally:
        await redis.aclose()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    asyncio.run(main())
