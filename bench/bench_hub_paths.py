"""The stream hub's XREAD round (issue 16, fifth pass), old next to new in one process.

A hub reader re-issues one XREAD BLOCK over all its keys (up to 256) after every reply;
at 500 open streams that is about three rounds per answer. One round here is that
XREAD against a real Redis, over `--keys` task streams of which `--streams` have
`--entries` new token entries each, and the reply's dispatch into `StreamEntry`s:

- old: redis-py's `xread` (its argument list built in Python, its reply turned into
  dicts by `parse_xread`), then `StreamEntry.from_redis` per entry (the code before this
  pass, kept below);
- new: `StreamReader.read` (one `execute_command` on a client without an XREAD reply
  callback, streams.raw_xread) and `StreamReader.dispatch` (`StreamEntry.from_fields`
  on Redis' flat field lists).

Both run on the product's connections (backend.connections.redis_pool: hiredis packing
and parsing), alternating batch by batch; the CPU of this process (`process_time`:
the kernel's share of the socket writes included) is divided by the rounds. A PING's
round trip is printed as the floor every command pays. Also printed: the reply's parse
alone (no Redis), on a reply read once.

Usage: python -m bench.bench_hub_paths [--keys N] [--streams N] [--entries N]
       [--rounds N] [--batches N] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis._parsers.helpers import parse_xread
from redis.asyncio import Redis

from backend.connections import redis_pool
from backend.constants import task_events_key
from backend.settings import Settings
from backend.streams.hub import StreamReader
from backend.streams.raw_xread import reply_streams
from backend.streams.task_stream import StreamEntry, text


def old_dispatch(reader: StreamReader, key: str, rows: list) -> bool:
    """`StreamReader.dispatch` before this pass: rows as redis-py parsed them."""
    if key == reader.wake_key:
        reader.wake_cursor = text(rows[-1][0])
        return False
    if key not in reader.positions:
        return False
    entries = [StreamEntry.from_redis(i, f) for i, f in rows]
    reader.positions[key] = entries[-1].id
    for subscription in reader.subscribers.get(key, ()):
        subscription.offer(entries)
    return True


async def old_round(reader: StreamReader) -> int:
    streams = {reader.wake_key: reader.wake_cursor, **reader.positions}
    reply = await reader.redis.xread(streams, block=reader.block_ms)
    return sum(old_dispatch(reader, text(key), rows) for key, rows in reply or [])


async def new_round(reader: StreamReader) -> int:
    reply = await reader.read()
    return sum(reader.dispatch(text(key), rows) for key, rows in reply_streams(reply))


async def fill(redis: Redis, prefix: str, keys: int, streams: int, entries: int) -> dict:
    """`keys` task streams; the positions after which the first `streams` of them have
    `entries` new token entries (the others none)."""
    positions: dict[str, str] = {}
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(keys):
            key = task_events_key(prefix, uuid.uuid4().hex)
            pipe.xadd(key, {"type": "token", "data": orjson.dumps({"delta": "start"}).decode()})
            for e in range(entries if n < streams else 0):
                data = orjson.dumps({"delta": f" token {e}, ünïcode ✓"}).decode()
                pipe.xadd(key, {"type": "token", "data": data})
            positions[key] = ""
        ids = await pipe.execute()
    at = 0
    for n, key in enumerate(positions):
        positions[key] = text(ids[at])
        at += 1 + (entries if n < streams else 0)
    return positions


async def timed(
    work: Callable[[], Awaitable[object]], reset: Callable[[], None], rounds: int
) -> float:
    spent = 0.0
    for _ in range(rounds):
        reset()
        started = time.process_time()
        await work()
        spent += time.process_time() - started
    return spent / rounds * 1e6


async def run(args: argparse.Namespace) -> None:
    settings = Settings(redis_url=args.redis_url)
    redis = redis_pool(settings)
    prefix = f"bench-hub-{uuid.uuid4().hex[:8]}"
    reader = StreamReader(redis, prefix, block_ms=1000)
    try:
        positions = await fill(redis, prefix, args.keys, args.streams, args.entries)
        for key, entry_id in positions.items():
            reader.positions[key] = entry_id
        wake_cursor = text(await redis.xadd(reader.wake_key, {"w": "1"}))

        def reset() -> None:
            for key, entry_id in positions.items():
                reader.positions[key] = entry_id
            reader.wake_cursor = wake_cursor  # no wake in the reply

        reset()
        assert await old_round(reader) == args.streams
        reset()
        assert await new_round(reader) == args.streams
        spent: dict[str, list[float]] = {"ping": [], "old": [], "new": []}
        for _ in range(args.batches):
            spent["old"].append(await timed(lambda: old_round(reader), reset, args.rounds))
            spent["new"].append(await timed(lambda: new_round(reader), reset, args.rounds))
            spent["ping"].append(await timed(redis.ping, reset, args.rounds))
        old, new, ping = (statistics.median(spent[k]) for k in ("old", "new", "ping"))
        print(
            f"hub round, {args.keys} keys, {args.streams} streams x {args.entries} entries "
            f"(median of {args.batches} batches of {args.rounds}):"
        )
        print(f"  old {old:7.1f} us   new {new:7.1f} us   ratio {new / old:.2f}")
        print(
            f"  beyond a PING's round trip ({ping:.1f} us): old {old - ping:.1f} us, "
            f"new {new - ping:.1f} us, ratio {(new - ping) / (old - ping):.2f}"
        )
        reset()
        raw = await reader.read()
        parse_only(reader, raw, args.rounds * 20)
    finally:
        await redis.delete(*positions, reader.wake_key)
        await redis.aclose()


def parse_only(reader: StreamReader, raw: Any, times: int) -> None:
    """The reply's parse alone: redis-py's callback then `from_redis`, against
    `from_fields` on the reply as read."""

    def old() -> int:
        return sum(
            len([StreamEntry.from_redis(i, f) for i, f in rows]) for _, rows in parse_xread(raw)
        )

    def new() -> int:
        return sum(len([StreamEntry.from_fields(i, f) for i, f in rows]) for _, rows in raw)

    assert old() == new()
    spent = {}
    for name, work in (("old", old), ("new", new)):
        started = time.process_time()
        for _ in range(times):
            work()
        spent[name] = (time.process_time() - started) / times * 1e6
    print(
        f"  the reply's parse alone: old {spent['old']:.1f} us   new {spent['new']:.1f} us   "
        f"ratio {spent['new'] / spent['old']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=256)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--entries", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--batches", type=int, default=9)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
