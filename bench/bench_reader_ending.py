"""A streamed answer's ending in the web process, the reader's consume as it was (not
shielded: a cancel left `close` to send a second release) next to the shielded one
(`TaskReader.consume`), alternating round by round in one process, on a real Redis.

Two clients: one that closes the connection as soon as it reads `done` (most do: the
bench's, fetch readers, SDKs), which cancels the request while the consume's script is
on its way, and one that reads the response to its end. Each answer: a reader opened on
a stream holding a token and `done` (lease, hub subscription), both entries taken, then
the ending; CPU of this process until the stream is consumed and its lease free, per
answer, old and new, and the ratio; and the Redis scripts each ending sent.

Usage: python -m bench.bench_reader_ending [--rounds N] [--runs N] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any
from unittest import mock

import redis.asyncio as aioredis

from backend.settings import Settings
from backend.streams.delivery import TaskReader, open_new_task_reader
from backend.streams.hub import StreamHub
from backend.streams.task_stream import TaskStream
from bench.alternation import us_per_call
from schemas.events import DoneEvent, TokenEvent

DONE = DoneEvent(message_id=None, prompt_tokens=1, completion_tokens=1, cost=0)


@dataclass
class NewTask:
    id: str


async def consume_before(self: TaskReader) -> None:
    """The terminal step as it was: a cancel before the reply left `close` to release."""
    await self.stream.consume_and_release(self.lease)
    self.closed = True


def side(old: bool) -> AbstractContextManager[object]:
    return mock.patch.object(TaskReader, "consume", consume_before) if old else nullcontext()


async def settled(stream: TaskStream) -> None:
    """Until the ending's Redis work is done (the old release runs in a task of its own)."""
    for _ in range(10_000):
        if not await stream.redis.exists(stream.lease_key):
            return
        await asyncio.sleep(0)
    raise RuntimeError("the answer's lease was never released")


def answer(
    redis: aioredis.Redis, hub: StreamHub, settings: Settings, closes: bool
) -> Callable[[], Awaitable[None]]:
    async def once() -> None:
        task = NewTask(uuid.uuid4().hex)
        stream = TaskStream.for_task(redis, settings, task.id)
        await stream.append(TokenEvent(delta="hi"))
        await stream.append(DONE)
        reader = await open_new_task_reader(task, redis=redis, hub=hub, settings=settings)  # type: ignore[arg-type]
        events = reader.events()
        await anext(events)
        await anext(events)
        if closes:
            ending = asyncio.create_task(anext(events, None))
            await asyncio.sleep(0)  # the consume's script is sent
            ending.cancel()
            await asyncio.gather(ending, return_exceptions=True)
        else:
            await anext(events, None)
        await events.aclose()
        await settled(stream)
        await redis.delete(stream.key, stream.consumed_key)

    return once


async def scripts_per_ending(
    redis: aioredis.Redis, hub: StreamHub, settings: Settings, old: bool
) -> int:
    sent: list[str] = []
    command = aioredis.Redis.execute_command

    async def counted(self: aioredis.Redis, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() == "EVAL":
            sent.append("eval")
        return await command(self, *args, **options)

    with side(old), mock.patch.object(aioredis.Redis, "execute_command", counted):
        for _ in range(20):
            await answer(redis, hub, settings, closes=True)()
    return len(sent) // 20


async def main(url: str, rounds: int, runs: int) -> None:
    redis = aioredis.from_url(url)
    settings = Settings(redis_prefix=f"bench-ending-{uuid.uuid4().hex[:8]}", _env_file=None)
    hub = StreamHub(redis, settings.redis_prefix, block_ms=2000)
    try:
        for closes, client in ((True, "closes at done"), (False, "reads to the end")):
            once = answer(redis, hub, settings, closes)

            async def old(once: Callable[[], Awaitable[None]] = once) -> None:
                with side(True):
                    await once()

            async def new(once: Callable[[], Awaitable[None]] = once) -> None:
                with side(False):
                    await once()

            for _ in range(20):  # warm both
                await old()
                await new()
            before, after = await us_per_call(old, new, rounds, runs)
            print(
                f"client {client:<18} answer's reader {before:7.1f} -> {after:7.1f} us CPU "
                f"({after / before:.2f}x)"
            )
        old_scripts = await scripts_per_ending(redis, hub, settings, True)
        new_scripts = await scripts_per_ending(redis, hub, settings, False)
        print(f"scripts per ending (client closes at done): {old_scripts} -> {new_scripts}")
    finally:
        await hub.stop()
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    arguments = parser.parse_args()
    if not arguments.redis_url:
        raise SystemExit("needs Redis: --redis-url or REDIS_URL")
    asyncio.run(main(arguments.redis_url, arguments.rounds, arguments.runs))
