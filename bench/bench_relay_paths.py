"""The chat worker's path from the provider's socket to the task's event stream, old next
to new in one process, alternating rounds (CPU of this process, `time.process_time`,
per token), so the ratio holds whatever else the VM runs.

N answers of 60 tokens at once, each paced at the bench's 50 tokens/s by the fake
upstream in its own process (tests/support/fake_openai.py), read by the OpenAI-compatible
provider, relayed with the coalescing window of N generations, appended to a real Redis
through one shared `EventWriter`, as the chat worker does:

- old (tests/support/relay_before.py): a chunk per generator step over aiohttp's
  `iter_any`, `stream`'s step and a `Delta` per token, an `asyncio.Queue` put per event;
- new: the provider's `bursts` (one list of deltas per network read, `readany` itself),
  the relay's pending list woken only when it waits on an empty one.

Usage: python -m bench.bench_relay_paths [--streams N] [--rounds N] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from backend.connections import redis_pool
from backend.providers.base import ModelSpec
from backend.providers.openai_compatible import OpenAICompatibleProvider
from backend.settings import get_settings
from backend.streams.event_writer import EventWriter
from backend.streams.task_stream import TaskStream
from bench.service import fake_upstream
from tests.support.provider_calls import user_request
from tests.support.relay_before import RelayBefore, stream_before
from workers.jobs.coalescing import CoalesceWindow
from workers.jobs.relay import Relay, Relayed

ROOT = Path(__file__).resolve().parents[1]
TOKENS = 60
SPEC = ModelSpec(id="fake-gpt", provider="openai", upstream="fake-gpt", max_output=256)

Way = Callable[[OpenAICompatibleProvider, Callable[[str], Awaitable[object]]], Awaitable[Relayed]]


def old_way(window: float) -> Way:
    async def relay(provider: OpenAICompatibleProvider, send: Callable[[str], Awaitable[object]]):
        request = user_request(SPEC)
        return await RelayBefore(stream_before(provider, request), send, window=window).run()

    return relay


def new_way(window: float) -> Way:
    async def relay(provider: OpenAICompatibleProvider, send: Callable[[str], Awaitable[object]]):
        return await Relay(provider.bursts(user_request(SPEC)), send, window=window).run()

    return relay


async def answers(
    way: Way,
    provider: OpenAICompatibleProvider,
    writer: EventWriter | None,
    streams: int,
) -> tuple[float, int, int]:
    """CPU seconds for `streams` answers at once, appended through `writer` (None: sent
    nowhere); their tokens and token events."""
    settings = get_settings()
    events = 0

    async def one() -> int:
        nonlocal events
        task_id = f"bench-relay-{uuid.uuid4().hex}"
        stream = writer and TaskStream.for_task(writer.redis, settings, task_id, writer)

        async def send(text: str) -> None:
            nonlocal events
            events += 1
            if stream is not None:
                await stream.append_token(text)

        result = await way(provider, send)
        if stream is not None:
            await stream.redis.delete(stream.key)
        assert result.usage is not None and result.answer
        return result.usage.completion_tokens

    started = time.process_time()
    tokens = sum(await asyncio.gather(*(one() for _ in range(streams))))
    return time.process_time() - started, tokens, events


async def compare(
    name: str,
    provider: OpenAICompatibleProvider,
    writer: EventWriter | None,
    args: argparse.Namespace,
    window: float,
) -> None:
    ways = {"old": old_way(window), "new": new_way(window)}
    per_token: dict[str, list[float]] = {way: [] for way in ways}
    events = dict.fromkeys(ways, 0)
    trips = dict.fromkeys(ways, 0)
    for round_ in range(args.rounds):
        # Old first in even rounds, new first in odd ones: neither gains from the order.
        for way in sorted(ways, reverse=bool(round_ % 2)):
            before = writer.round_trips if writer else 0
            seconds, tokens, sent = await answers(ways[way], provider, writer, args.streams)
            trips[way] += (writer.round_trips if writer else 0) - before
            assert tokens == TOKENS * args.streams, (way, tokens)
            per_token[way].append(seconds / tokens * 1e6)
            events[way] += sent
    # The median round of each: a round that another process on the VM slowed is out.
    old, new = (statistics.median(per_token[way]) for way in ways)
    answers_run = args.rounds * args.streams
    per_answer = "/".join(f"{events[way] / answers_run:.1f}" for way in ways)
    per_trip = "/".join(f"{events[way] / trips[way]:.1f}" if trips[way] else "-" for way in ways)
    print(
        f"{name:<40} {old:>8.1f} {new:>8.1f} µs    {new / old:>5.2f}x  {per_answer:>11}"
        f"  {per_trip:>9}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument(
        "--window-ms",
        type=float,
        help="the coalescing window (default: the worker's at 500 generations, 40 ms)",
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    settings = get_settings()
    if args.redis_url:
        settings = settings.model_copy(update={"redis_url": args.redis_url})
    redis = redis_pool(settings)
    writer = EventWriter(redis, own_connection=True)
    # The window of a busy worker, with few enough streams that this process does not
    # saturate: a saturated loop gathers more tokens per event, and its CPU per token
    # falls with its speed, which would favour the slower path.
    window = (
        args.window_ms / 1000
        if args.window_ms is not None
        else CoalesceWindow.from_settings(settings).seconds(500)
    )
    print(
        f"{args.streams} answers of {TOKENS} tokens at once, 50 tokens/s each, "
        f"window {window * 1000:g} ms, median of {args.rounds} rounds"
    )
    head = f"{'path, CPU per token':<40} {'old':>8} {'new':>8} {'unit':<5} {'ratio':>6}"
    print(f"{head}  events/ans  ev/trip")
    async with fake_upstream(TOKENS, tokens_per_second=50) as base_url:
        provider = OpenAICompatibleProvider(base_url, "k", timeout=60)
        try:
            for _ in range(100):  # the upstream may not listen yet
                try:
                    await answers(new_way(0.0), provider, None, 1)
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            await compare("provider -> relay (sent nowhere)", provider, None, args, window)
            await compare("provider -> relay -> Redis", provider, writer, args, window)
        finally:
            await provider.aclose()
            await writer.aclose()
            await redis.aclose()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    asyncio.run(main())
