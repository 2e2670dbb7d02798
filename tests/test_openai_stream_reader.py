"""The lean OpenAI stream reader (backend/providers/openai_sse.py) over real sockets, on
what the `openai` SDK used to handle for it: retries and their limits, error bodies,
usage, malformed chunks, bytes split anywhere, and connection reuse.

Each test scripts the upstream's replies, one per request, on a raw HTTP server
(tests/support/fake_http.py); tests/test_providers_openai.py covers the same provider
against the full fake OpenAI server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from backend.providers.base import Delta, ModelSpec, ProviderError, ProviderErrorCode, Usage
from backend.providers.openai_compatible import OpenAICompatibleProvider
from tests.support.fake_http import Exchange, FakeHttpServer, Request
from tests.support.provider_calls import collect, user_request

Reply = Callable[[Exchange], Awaitable[None]]
SPEC = ModelSpec(id="gpt-test", provider="openai", upstream="up", max_output=16)


def chunk(content: str | None = None, finish: str | None = None, **extra: object) -> bytes:
    choice = {"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}
    return b"data: " + json.dumps({"choices": [choice], **extra}).encode() + b"\n\n"


USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n'
GOOD = [chunk("Hel"), chunk("lo"), chunk(finish="stop"), USAGE, b"data: [DONE]\n\n"]


def stream_of(*pieces: bytes) -> Reply:
    async def reply(exchange: Exchange) -> None:
        await exchange.start_stream()
        for piece in pieces:
            await exchange.send_chunk(piece)
        await exchange.end_stream()
        exchange.finish_stream(True)

    return reply


def status(code: int, body: object, **headers: str) -> Reply:
    async def reply(exchange: Exchange) -> None:
        if isinstance(body, bytes):
            head = {"Content-Length": str(len(body)), **headers}
            exchange.writer.write(exchange._head(code, head) + body)
            await exchange.writer.drain()
        else:
            await exchange.send_json(code, body, headers)

    return reply


class Script:
    """Replies in order, one per request; the last one repeats."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.connections: set[int] = set()

    async def __call__(self, request: Request, exchange: Exchange) -> None:
        self.connections.add(id(exchange.writer))
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        await reply(exchange)


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[..., Awaitable[tuple[FakeHttpServer, Script]]]]:
    servers: list[FakeHttpServer] = []

    async def start(*replies: Reply) -> tuple[FakeHttpServer, Script]:
        script = Script(*replies)
        server = FakeHttpServer(script)
        await server.start()
        servers.append(server)
        return server, script

    yield start
    for server in servers:
        await server.close()


def provider_of(server: FakeHttpServer, retries: int = 0) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        f"http://127.0.0.1:{server.port}/v1", "k", timeout=2, max_retries=retries
    )


async def failure(provider: OpenAICompatibleProvider) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await collect(provider, user_request(SPEC))
    await provider.aclose()
    return caught.value


async def test_deltas_then_the_usage_chunk_with_empty_choices(upstream) -> None:
    server, _ = await upstream(stream_of(*GOOD))
    provider = provider_of(server)
    events = await collect(provider, user_request(SPEC))
    await provider.aclose()
    assert events == [Delta("Hel"), Delta("lo"), Usage(5, 2)]
    body = server.stats.requests[0].json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert server.stats.requests[0].headers["authorization"] == "Bearer k"


async def test_bytes_split_anywhere_and_crlf_line_ends_read_the_same(upstream) -> None:
    whole = b"".join(GOOD).replace(b"\n", b"\r\n")
    server, _ = await upstream(stream_of(b": keep-alive\r\n\r\n", *[bytes([b]) for b in whole]))
    provider = provider_of(server)
    events = await collect(provider, user_request(SPEC))
    await provider.aclose()
    assert events == [Delta("Hel"), Delta("lo"), Usage(5, 2)]


async def test_a_stream_read_to_its_end_leaves_its_connection_for_the_next(upstream) -> None:
    server, script = await upstream(stream_of(*GOOD))
    provider = provider_of(server)
    for _ in range(3):
        await collect(provider, user_request(SPEC))
    await provider.aclose()
    assert len(server.stats.requests) == 3
    assert len(script.connections) == 1


async def test_server_errors_are_retried_then_the_stream_is_read(upstream) -> None:
    overloaded = status(503, {"error": {"message": "overloaded"}}, **{"Retry-After": "0"})
    server, _ = await upstream(overloaded, overloaded, stream_of(*GOOD))
    events = await collect(provider := provider_of(server, retries=2), user_request(SPEC))
    await provider.aclose()
    assert events[-1] == Usage(5, 2)
    assert len(server.stats.requests) == 3


async def test_retries_stop_at_max_retries_with_the_last_error(upstream) -> None:
    server, _ = await upstream(
        status(429, {"error": {"message": "slow down"}}, **{"Retry-After": "0"})
    )
    error = await failure(provider_of(server, retries=2))
    assert error.code is ProviderErrorCode.RATE_LIMITED
    assert error.retry_after == 0
    assert len(server.stats.requests) == 3


async def test_retries_back_off_without_retry_after(upstream) -> None:
    server, _ = await upstream(status(500, {"error": {"message": "boom"}}), stream_of(*GOOD))
    events = await collect(provider := provider_of(server, retries=1), user_request(SPEC))
    await provider.aclose()
    assert events[0] == Delta("Hel")
    assert len(server.stats.requests) == 2


@pytest.mark.parametrize(
    ("reply", "code", "hint"),
    [
        (
            status(400, {"error": {"message": "context too long"}}),
            ProviderErrorCode.BAD_REQUEST,
            "context too long",
        ),
        (status(401, {"error": {"message": "bad key"}}), ProviderErrorCode.AUTH, "OPENAI_API_KEY"),
        (
            status(500, b"<html>proxy error</html>", **{"x-should-retry": "false"}),
            ProviderErrorCode.UNAVAILABLE,
            "HTTP 500",
        ),
    ],
)
async def test_errors_that_are_not_retried(upstream, reply: Reply, code, hint: str) -> None:
    server, _ = await upstream(reply)
    error = await failure(provider_of(server, retries=3))
    assert error.code is code
    assert hint in error.message
    assert len(server.stats.requests) == 1


async def test_a_plain_text_error_body_is_the_detail(upstream) -> None:
    server, _ = await upstream(status(422, b"field messages: required"))
    error = await failure(provider_of(server))
    assert error.code is ProviderErrorCode.BAD_REQUEST
    assert "field messages: required" in error.message


@pytest.mark.parametrize(
    ("bad", "hint"),
    [
        (b"data: [1, 2]\n\n", "not a JSON object"),
        (b'data: {"choices": [{"delta": {"content": 7}}]}\n\n', "not text"),
        (b'data: {"choices": ["x"]}\n\n', "without a choice"),
        (b'data: {"choices": [], "usage": {"prompt_tokens": 1}}\n\n', "usage without token counts"),
        (b'data: {"choices": [{"delta": \n\n', "invalid JSON"),
    ],
)
async def test_malformed_chunks_after_some_deltas(upstream, bad: bytes, hint: str) -> None:
    server, _ = await upstream(stream_of(chunk("Hel"), bad, *GOOD[1:]))
    provider = provider_of(server)
    received = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(user_request(SPEC)):
            received.append(event)
    await provider.aclose()
    assert received == [Delta("Hel")]
    assert caught.value.code is ProviderErrorCode.MALFORMED
    assert hint in caught.value.message


async def test_an_error_object_mid_stream_is_the_upstreams_message(upstream) -> None:
    mid = b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n'
    server, _ = await upstream(stream_of(chunk("Hel"), mid))
    error = await failure(provider_of(server, retries=3))
    assert error.code is ProviderErrorCode.UNAVAILABLE
    assert "model overloaded" in error.message
    assert len(server.stats.requests) == 1  # a started stream is never re-sent
