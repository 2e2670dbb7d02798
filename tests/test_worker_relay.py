"""The relay (provider stream → coalesced token events) and the worker's watch loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from backend.constants import task_cancel_key, task_heartbeat_key
from backend.providers.base import (
    Delta,
    ProviderError,
    ProviderErrorCode,
    Queued,
    StreamEvent,
    Usage,
)
from backend.settings import Settings
from workers.jobs.relay import Ending, Relay
from workers.jobs.watch import Watch


class Upstream:
    """A scripted provider stream that records whether it was closed."""

    def __init__(self, tokens: list[str], *, gap: float = 0.0, then_hang: bool = False) -> None:
        self.tokens = tokens
        self.gap = gap
        self.then_hang = then_hang
        self.closed = False
        self.error: ProviderError | None = None

    async def stream(self) -> AsyncIterator[StreamEvent]:
        try:
            for token in self.tokens:
                if self.gap:
                    await asyncio.sleep(self.gap)
                yield Delta(token)
            if self.error is not None:
                raise self.error
            if self.then_hang:
                await asyncio.sleep(3600)
            yield Usage(prompt_tokens=7, completion_tokens=len(self.tokens))
        finally:
            self.closed = True


class Sink:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, text: str) -> None:
        self.events.append(text)


async def test_queued_notices_are_passed_on_at_once_and_the_answer_follows() -> None:
    notices: list[int] = []
    sink = Sink()

    async def waiting() -> AsyncIterator[StreamEvent]:
        for position in (2, 1, 0):
            yield Queued(position)
            await asyncio.sleep(0.01)
        yield Delta("hello")
        yield Usage(prompt_tokens=3, completion_tokens=1)

    async def queued(position: int) -> None:
        notices.append(position)
        assert sink.events == []  # each notice goes out before any token

    result = await Relay(waiting(), sink, window=0.004, on_queued=queued).run()
    assert notices == [2, 1, 0]
    assert result.ending is Ending.COMPLETED
    assert sink.events == ["hello"] and result.answer == "hello"
    assert result.usage == Usage(prompt_tokens=3, completion_tokens=1)


async def test_burst_of_deltas_is_coalesced() -> None:
    tokens = [f"t{i} " for i in range(200)]
    upstream, sink = Upstream(tokens, gap=0.0005), Sink()
    result = await Relay(upstream.stream(), sink, window=0.004).run()
    assert result.ending is Ending.COMPLETED
    assert "".join(sink.events) == "".join(tokens) == result.answer
    assert len(sink.events) < len(tokens) / 3
    assert result.usage == Usage(prompt_tokens=7, completion_tokens=200)


async def test_first_token_is_not_held_back_by_the_window() -> None:
    upstream = Upstream(["first", "second"], then_hang=True)
    sent_at: list[float] = []

    async def sink(text: str) -> None:
        sent_at.append(time.perf_counter())

    relay = Relay(upstream.stream(), sink, window=0.5)
    started = time.perf_counter()
    asyncio.get_running_loop().call_later(0.8, relay.cancel)
    await relay.run()
    assert sent_at[0] - started < 0.05


async def test_spaced_deltas_are_sent_one_event_each() -> None:
    tokens = ["a", "b", "c", "d", "e"]
    upstream, sink = Upstream(tokens, gap=0.03), Sink()
    result = await Relay(upstream.stream(), sink, window=0.004).run()
    assert sink.events == tokens
    assert result.ending is Ending.COMPLETED


async def test_cancel_interrupts_a_silent_provider_and_closes_it() -> None:
    upstream, sink = Upstream(["partial"], then_hang=True), Sink()
    relay = Relay(upstream.stream(), sink, window=0.004)
    asyncio.get_running_loop().call_later(0.1, relay.cancel)
    started = time.perf_counter()
    result = await relay.run()
    assert time.perf_counter() - started < 0.5
    assert result.ending is Ending.CANCELLED
    assert result.answer == "partial"
    assert sink.events == ["partial"]
    assert upstream.closed


async def test_provider_error_mid_stream_keeps_what_was_produced() -> None:
    upstream, sink = Upstream(["one ", "two "], gap=0.01), Sink()
    upstream.error = ProviderError(ProviderErrorCode.UNAVAILABLE, "upstream 500")
    result = await Relay(upstream.stream(), sink, window=0.0).run()
    assert result.ending is Ending.FAILED
    assert isinstance(result.error, ProviderError)
    assert result.error.code is ProviderErrorCode.UNAVAILABLE
    assert result.answer == "one two "
    assert result.usage is None


async def test_watch_heartbeats_and_reports_cancel(settings: Settings) -> None:
    fast = settings.model_copy(
        update={
            "task_cancel_poll_seconds": 0.02,
            "task_heartbeat_interval_seconds": 0.1,
            "task_heartbeat_ttl_seconds": 1,
        }
    )
    redis = aioredis.from_url(settings.redis_url)
    watch = Watch(redis, fast)
    heartbeat = task_heartbeat_key(fast.redis_prefix, "watched")
    cancelled = asyncio.Event()
    try:
        async with watch.track("watched", cancelled.set):
            assert await redis.exists(heartbeat)
            await redis.pexpire(heartbeat, 150)
            await asyncio.sleep(0.3)
            assert await redis.pttl(heartbeat) > 500, "heartbeat was not refreshed"
            assert not cancelled.is_set()
            await redis.set(task_cancel_key(fast.redis_prefix, "watched"), "1")
            await asyncio.wait_for(cancelled.wait(), timeout=0.5)
        assert not await redis.exists(heartbeat)
    finally:
        await watch.close()
        await redis.delete(task_cancel_key(fast.redis_prefix, "watched"))
        await redis.aclose()
