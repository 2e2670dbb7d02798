"""The OpenAI-compatible stream's timeout between bytes (`ReadWatchdog`), against the fake
upstream over a real socket: a paced stream that stalls after its headers and a few
tokens still fails as a timeout, soon after the timeout; a stream longer than the
timeout whose tokens keep coming is not cut; and reading it schedules no timer per
chunk (aiohttp's `sock_read` rescheduled one on every read)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backend.providers.base import Delta, ModelSpec, ProviderError, ProviderErrorCode
from backend.providers.openai_compatible import OpenAICompatibleProvider
from tests.support.fake_http import FAIL_AFTER_TOKENS
from tests.support.fake_openai import FakeOpenAIServer, fake_openai_server
from tests.support.provider_calls import collect, user_request

TIMEOUT = 0.4
RATE = 20.0  # a token every 50 ms: every chunk arrives after the headers, on its own


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with fake_openai_server(tokens=12, tokens_per_second=RATE) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeOpenAIServer) -> AsyncIterator[OpenAICompatibleProvider]:
    provider = OpenAICompatibleProvider(fake.base_url, "k", timeout=TIMEOUT)
    yield provider
    await provider.aclose()


def spec(upstream: str) -> ModelSpec:
    return ModelSpec(id="gpt-test", provider="openai", upstream=upstream, max_output=64)


async def test_a_stream_that_stalls_after_some_paced_tokens_times_out(
    provider: OpenAICompatibleProvider,
) -> None:
    received: list[Any] = []
    last_at = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(user_request(spec("fail-stall"))):
            received.append(event)
            last_at = time.monotonic()
    waited = time.monotonic() - last_at
    assert len(received) == FAIL_AFTER_TOKENS
    assert caught.value.code is ProviderErrorCode.TIMEOUT
    assert TIMEOUT * 0.9 <= waited < TIMEOUT * 2.5


async def test_a_stream_longer_than_the_timeout_is_not_cut_while_tokens_come(
    fake: FakeOpenAIServer,
) -> None:
    slow = OpenAICompatibleProvider(fake.base_url, "k", timeout=0.2)
    try:
        started = time.monotonic()
        events = await collect(slow, user_request(spec("fake-gpt")))  # 12 tokens, 0.6 s
        assert time.monotonic() - started > 0.4
        assert sum(isinstance(e, Delta) for e in events) == 12
    finally:
        await slow.aclose()


async def test_reading_a_stream_schedules_no_timer_per_chunk(
    provider: OpenAICompatibleProvider,
) -> None:
    loop = asyncio.get_running_loop()
    call_at = loop.call_at
    read_timers: list[str] = []

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        owner = type(getattr(callback, "__self__", None)).__name__
        if owner in ("ResponseHandler", "ReadWatchdog"):
            read_timers.append(owner)
        return call_at(when, callback, *args, **kwargs)

    loop.call_at = counting  # type: ignore[method-assign]
    try:
        events = await collect(provider, user_request(spec("fake-gpt")))
    finally:
        del loop.call_at  # type: ignore[attr-defined]
    assert sum(isinstance(e, Delta) for e in events) == 12
    # aiohttp's until the headers are in, not one per chunk (15 chunks) after them; the
    # watchdog's one per quarter timeout (the stream takes 0.6 s).
    assert read_timers.count("ResponseHandler") <= 2, read_timers
    assert read_timers.count("ReadWatchdog") <= 0.6 / (TIMEOUT / 4) + 2, read_timers
