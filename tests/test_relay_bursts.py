"""The relay over a provider's bursts (a list of events per network read) and its
gathering window started by the pump: what tests/test_worker_relay.py holds for events
one at a time, for bursts; and a cancel that ends a window early."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from backend.providers.base import (
    Burst,
    Delta,
    ProviderError,
    ProviderErrorCode,
    StreamEvent,
    Usage,
)
from workers.jobs.relay import Ending, Relay


class Sink:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, text: str) -> None:
        self.events.append(text)


async def test_a_burst_goes_out_at_once_first_then_gathered() -> None:
    async def bursts() -> AsyncIterator[Burst]:
        yield ["Hel", "lo"]
        await asyncio.sleep(0.02)
        yield [" the"]
        yield ["re", ""]
        await asyncio.sleep(0.2)
        yield [Usage(3, 4)]

    sink = Sink()
    result = await Relay(bursts(), sink, window=0.1).run()
    assert sink.events == ["Hello", " there"]
    assert result.ending is Ending.COMPLETED and result.answer == "Hello there"
    assert result.usage == Usage(3, 4)


async def test_a_failure_after_a_burst_keeps_the_burst() -> None:
    async def bursts() -> AsyncIterator[Burst]:
        yield ["one ", "two "]
        raise ProviderError(ProviderErrorCode.MALFORMED, "bad chunk")

    sink = Sink()
    result = await Relay(bursts(), sink, window=0.0).run()
    assert result.ending is Ending.FAILED and result.answer == "one two "
    assert isinstance(result.error, ProviderError)
    assert "".join(sink.events) == "one two "


async def test_reads_during_a_window_join_the_read_that_opened_it() -> None:
    async def events() -> AsyncIterator[StreamEvent]:
        yield Delta("a")
        await asyncio.sleep(0.05)  # the relay waits: this read opens a window
        yield Delta("b")
        await asyncio.sleep(0.01)
        yield Delta("c")
        await asyncio.sleep(0.8)
        yield Usage(1, 3)

    sink = Sink()
    result = await Relay(events(), sink, window=0.4).run()
    assert (
        sink.events
        == [
            "a",
            "bc",
        ]
        and result.answer == "abc"
    )


async def test_a_cancel_ends_the_window_and_sends_what_it_gathered() -> None:
    closed = asyncio.Event()

    async def events() -> AsyncIterator[StreamEvent]:
        try:
            yield Delta("first ")
            await asyncio.sleep(0.05)
            yield Delta("second")
            await asyncio.sleep(3600)
        finally:
            closed.set()

    sink = Sink()
    relay = Relay(events(), sink, window=5.0)
    asyncio.get_running_loop().call_later(0.3, relay.cancel)
    started = time.perf_counter()
    result = await relay.run()
    assert time.perf_counter() - started < 2.0  # not the 5 s window
    assert result.ending is Ending.CANCELLED
    assert sink.events == ["first ", "second"] and result.answer == "first second"
    assert closed.is_set()
