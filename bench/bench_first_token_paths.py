"""Waits on a first token's path (issue 16), old next to new in one process, alternating.

What a lone answer waits for before its first token is mostly round trips and wake-ups,
not CPU (docs/streaming.md, "first token"). Each path changed for it is measured here by
wall time, the old way and the new way in alternating rounds against the same Redis
and database, so the other work on the VM weighs on both alike:

- the worker's claim: Tortoise building the `UPDATE … RETURNING` per call, against the
  statement written once (backend/models/task_claim.py); wall and CPU per claim;
- a new stream's first entry through the web's stream hub: the hub lingered 3 ms after
  every XREAD reply, the wake of a new subscription included, so a first token appended
  within that linger waited it out; now it lingers only after entries. The entry is
  appended `--delay` ms after the subscription (the worker's time to its first token);
- the worker's provider request: sent after the heartbeat's SET came back, against
  sent while it is on its way (time from the generation's start to its first token,
  the fake upstream in this process answering at once).

Usage: python -m bench.bench_first_token_paths [--rounds N] [--runs N] [--delay MS]
       [--database-url URL] [--redis-url URL]   (Redis: default $REDIS_URL)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from backend.database import close_database, open_database
from backend.models import Task, User
from backend.models.ids import new_id
from backend.providers.base import (
    ChatMessage,
    ChatRequest,
    ModelSpec,
    ProviderError,
    SamplingParams,
)
from backend.providers.openai_compatible import OpenAICompatibleProvider
from backend.settings import Settings
from backend.streams.hub import StreamHub, StreamReader
from backend.streams.task_stream import START, TaskStream
from bench.service import fake_upstream, migrated_database
from schemas.events import TokenEvent
from tests.support.orm_answer_writes import orm_claim
from workers.jobs.chat import claim
from workers.jobs.relay import Relay
from workers.jobs.watch import Watch

Timed = Callable[[], Awaitable[float]]


async def compare(name: str, old: Timed, new: Timed, rounds: int, runs: int, unit: str) -> None:
    """Median of each side's measurements (each call returns one), rounds alternating."""
    seen: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(rounds):
        for label, work in (("old", old), ("new", new)):
            for _ in range(runs):
                seen[label].append(await work())
    old_v, new_v = (statistics.median(seen[k]) for k in ("old", "new"))
    print(f"{name:<66} {old_v:>9.3f} {new_v:>9.3f} {unit:<3} {new_v / old_v:>6.2f}x")


async def claims(rounds: int, runs: int) -> None:
    user = await User.create(username=f"bench{new_id()[:8]}")
    queued = [(await Task.create(user_id=user.id, model="m")).id for _ in range(rounds * runs * 4)]

    def timed(claiming: Callable[[str], Awaitable[object]], clock: Callable[[], float]) -> Timed:
        async def one() -> float:
            started = clock()
            await claiming(queued.pop())
            return (clock() - started) * 1000

        return one

    clocks = {"wall": time.perf_counter, "CPU of this process": time.process_time}
    for measured, clock in clocks.items():
        old, new = timed(orm_claim, clock), timed(claim, clock)
        await compare(f"worker claim, {measured}", old, new, rounds, runs, "ms")


class LingeringAfterWakes(StreamReader):
    """The hub's reader before: it lingered after every reply, wakes alone included."""

    def dispatch(self, key: str, rows: list) -> bool:
        super().dispatch(key, rows)
        return True


def hub_with(redis: aioredis.Redis, prefix: str, reader: type[StreamReader]) -> StreamHub:
    hub = StreamHub(redis, prefix, block_ms=5000)
    first = reader(redis, prefix, block_ms=5000)
    first.start()
    hub.readers.append(first)
    return hub


async def hub_first_entries(redis_url: str, rounds: int, runs: int, delay: float) -> None:
    redis = aioredis.from_url(redis_url)
    prefix = f"bench-ftp-{uuid.uuid4().hex[:8]}"
    hubs = {
        "old": hub_with(redis, prefix, LingeringAfterWakes),
        "new": hub_with(redis, prefix, StreamReader),
    }
    # Each hub also follows a stream that stays idle, as a web process always has some.
    for hub in hubs.values():
        await hub.subscribe(f"{prefix}:idle:{uuid.uuid4().hex}", START)

    def first_entry(hub: StreamHub) -> Timed:
        async def one() -> float:
            stream = TaskStream(redis, prefix, uuid.uuid4().hex, retention_seconds=60)
            subscription = await hub.subscribe(stream.key, START)
            await asyncio.sleep(delay)
            started = time.perf_counter()
            await stream.append(TokenEvent(delta="first"))
            entry = await subscription.get(5)
            waited = (time.perf_counter() - started) * 1000
            assert entry is not None
            hub.unsubscribe(subscription)
            await redis.delete(stream.key)
            # The hub settles into its blocked read before the next stream comes.
            await asyncio.sleep(0.01)
            return waited

        return one

    try:
        await compare(
            f"hub: new stream's first entry, appended {delay * 1000:g} ms after subscribing",
            first_entry(hubs["old"]),
            first_entry(hubs["new"]),
            rounds,
            runs,
            "ms",
        )
    finally:
        for hub in hubs.values():
            await hub.stop()
        keys = [key async for key in redis.scan_iter(f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def provider_requests(redis_url: str, rounds: int, runs: int) -> None:
    redis = aioredis.from_url(redis_url)
    settings = Settings(
        redis_prefix=f"bench-ftp-{uuid.uuid4().hex[:8]}", secret_key="x" * 32, _env_file=None
    )
    watch = Watch(redis, settings)
    async with fake_upstream(3) as base_url:  # the upstream's CPU is not this process's
        provider = OpenAICompatibleProvider(base_url, "bench", timeout=30)
        spec = ModelSpec(id="m", provider="openai", upstream="fake-gpt")
        request = ChatRequest(
            model=spec,
            messages=[ChatMessage(role="user", content="Hi")],
            params=SamplingParams(max_tokens=3),
        )

        def generation(overlapped: bool) -> Timed:
            async def one() -> float:
                first: list[float] = []

                async def send(text: str) -> None:
                    if not first:
                        first.append(time.perf_counter())

                started = time.perf_counter()
                relay = Relay(provider.stream(request), send, window=0.0)
                if overlapped:
                    relay.start()
                async with watch.track(uuid.uuid4().hex, relay.cancel):
                    relayed = await relay.run()
                if relayed.error is not None:
                    raise relayed.error
                return (first[0] - started) * 1000

            return one

        try:
            for _ in range(100):  # until the upstream listens; its connection is kept
                try:
                    await generation(True)()
                    break
                except ProviderError:
                    await asyncio.sleep(0.1)
            await compare(
                "worker: generation start → first token relayed (heartbeat SET)",
                generation(False),
                generation(True),
                rounds,
                runs,
                "ms",
            )
        finally:
            await provider.aclose()
            await watch.close()
            await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--delay", type=float, default=1.5, help="ms, see the docstring")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    args = parser.parse_args()
    print(f"{'path (median per call)':<66} {'old':>9} {'new':>9}     {'ratio':>6}")
    with migrated_database(args.database_url) as settings:

        async def go() -> None:
            await open_database(settings)
            try:
                await claims(args.rounds, args.runs)
            finally:
                await close_database()
            if args.redis_url:
                await hub_first_entries(args.redis_url, args.rounds, args.runs, args.delay / 1000)
                await provider_requests(args.redis_url, args.rounds, args.runs)

        asyncio.run(go())


if __name__ == "__main__":
    main()
