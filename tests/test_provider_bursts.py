"""The OpenAI-compatible provider's `bursts` (what the chat worker's relay reads): the
deltas of each network read in one list, as bare texts, then the usage; over real
sockets against a scripted upstream (tests/support/fake_http.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from backend.providers.base import Burst, ProviderError, ProviderErrorCode, Usage
from backend.providers.openai_compatible import OpenAICompatibleProvider
from tests.support.fake_http import Exchange, FakeHttpServer, Request
from tests.support.provider_calls import user_request
from tests.test_openai_stream_reader import GOOD, SPEC, USAGE, chunk


class Pieces:
    """Sends each piece as one write, after the test opens its gate (None: at once)."""

    def __init__(self, *pieces: tuple[bytes, asyncio.Event | None]) -> None:
        self.pieces = pieces

    async def __call__(self, request: Request, exchange: Exchange) -> None:
        await exchange.start_stream()
        for piece, gate in self.pieces:
            if gate is not None:
                await gate.wait()
            await exchange.send_chunk(piece)
        await exchange.end_stream()
        exchange.finish_stream(True)


@pytest.fixture
async def serve() -> AsyncIterator[list[FakeHttpServer]]:
    servers: list[FakeHttpServer] = []
    yield servers
    for server in servers:
        await server.close()


async def provider_for(serve: list[FakeHttpServer], pieces: Pieces) -> OpenAICompatibleProvider:
    server = FakeHttpServer(pieces)
    await server.start()
    serve.append(server)
    return OpenAICompatibleProvider(f"http://127.0.0.1:{server.port}/v1", "k", timeout=2)


async def test_several_events_in_one_read_are_one_burst_in_order(serve) -> None:
    whole = chunk("Hel") + chunk("lo") + chunk(" there") + chunk(finish="stop") + USAGE
    provider = await provider_for(serve, Pieces((whole + b"data: [DONE]\n\n", None)))
    bursts = [burst async for burst in provider.bursts(user_request(SPEC))]
    await provider.aclose()
    assert bursts == [["Hel", "lo", " there"], [Usage(5, 2)]]


async def test_an_event_split_across_reads_is_one_delta_once_complete(serve) -> None:
    gate = asyncio.Event()
    second = chunk("lo")
    provider = await provider_for(
        serve,
        Pieces(
            (chunk("Hel") + second[:9], None),
            (second[9:] + b"".join(GOOD[2:]), gate),
        ),
    )
    received: list[Burst] = []
    async for burst in provider.bursts(user_request(SPEC)):
        received.append(burst)
        gate.set()  # the rest of the split event goes out once the first read is in
    await provider.aclose()
    assert received == [["Hel"], ["lo"], [Usage(5, 2)]]


async def test_deltas_before_a_malformed_event_in_the_same_read_come_first(serve) -> None:
    bad = b'data: {"choices": [{"delta": {"content": 7}}]}\n\n'
    provider = await provider_for(serve, Pieces((chunk("Hel") + chunk("lo") + bad, None)))
    received: list[Burst] = []
    with pytest.raises(ProviderError) as caught:
        async for burst in provider.bursts(user_request(SPEC)):
            received.append(burst)
    await provider.aclose()
    assert received == [["Hel", "lo"]]
    assert caught.value.code is ProviderErrorCode.MALFORMED


async def test_a_stream_without_usage_counts_its_text(serve) -> None:
    pieces = chunk("Hel") + chunk("lo") + chunk(finish="length") + b"data: [DONE]\n\n"
    provider = await provider_for(serve, Pieces((pieces, None)))
    bursts = [burst async for burst in provider.bursts(user_request(SPEC))]
    await provider.aclose()
    assert bursts[0] == ["Hel", "lo"]
    (usage,) = bursts[1]
    assert isinstance(usage, Usage) and usage.completion_tokens > 0
    assert usage.finish_reason == "length"
