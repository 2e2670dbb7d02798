"""The Cohere v2 provider against the fake upstream, over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from backend.providers.base import (
    ChatMessage,
    ChatRequest,
    Delta,
    FinishReason,
    ModelSpec,
    ProviderError,
    ProviderErrorCode,
    SamplingParams,
    StreamEvent,
    Usage,
)
from backend.providers.cohere import CohereProvider, cohere_message
from backend.providers.tokens import count_message_tokens, count_tokens
from tests.support.fake_cohere import FakeCohereServer, billed_input_tokens, fake_cohere_server
from tests.support.fake_http import FAIL_AFTER_TOKENS, RETRY_AFTER_SECONDS, token_text
from tests.support.provider_calls import collect, user_request

TOKENS = 10
TIMEOUT = 0.5


@pytest.fixture
async def fake() -> AsyncIterator[FakeCohereServer]:
    async with fake_cohere_server(tokens=TOKENS) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeCohereServer) -> AsyncIterator[CohereProvider]:
    provider = CohereProvider(fake.base_url, "co-key", timeout=TIMEOUT)
    yield provider
    await provider.aclose()


def request_for(upstream: str, text: str = "hello there", **params: float) -> ChatRequest:
    return user_request(
        ModelSpec(id="command-test", provider="cohere", upstream=upstream, max_output=64),
        text,
        **params,
    )


async def test_streams_deltas_in_order_then_billed_usage(
    provider: CohereProvider, fake: FakeCohereServer
) -> None:
    events = await collect(provider, request_for("command-r"))
    assert events[:-1] == [Delta(token_text(i)) for i in range(TOKENS)]
    body = fake.stats.requests[-1].json()
    assert events[-1] == Usage(billed_input_tokens(body["messages"]), TOKENS)
    assert body["stream"] is True
    assert fake.stats.requests[-1].path == "/v2/chat"
    assert fake.stats.requests[-1].headers["authorization"] == "Bearer co-key"


async def test_a_reply_cut_by_max_tokens_reports_length(provider: CohereProvider) -> None:
    cut = await collect(provider, request_for("command-r", max_tokens=4))
    assert isinstance(cut[-1], Usage) and cut[-1].completion_tokens == 4
    assert cut[-1].finish_reason is FinishReason.LENGTH  # Cohere's MAX_TOKENS
    whole = await collect(provider, request_for("command-r"))
    assert whole[-1].finish_reason is FinishReason.STOP


async def test_sends_converted_messages_and_sampling(
    provider: CohereProvider, fake: FakeCohereServer
) -> None:
    image = {"url": "data:image/png;base64,AAAA"}
    messages = [
        ChatMessage("system", "Be brief."),
        ChatMessage(
            "assistant", [{"type": "text", "text": "Earlier "}, {"type": "text", "text": "answer"}]
        ),
        ChatMessage(
            "user",
            [{"type": "text", "text": "look at this"}, {"type": "image_url", "image_url": image}],
        ),
    ]
    spec = ModelSpec(id="aya-vision", provider="cohere", upstream="echo", max_output=32)
    params = SamplingParams(temperature=0.3, top_p=0.8, frequency_penalty=0.5)
    events = await collect(provider, ChatRequest(spec, messages, params))

    body = fake.stats.requests[-1].json()
    assert body["model"] == "echo"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Earlier answer"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look at this"},
                {"type": "image_url", "image_url": image},
            ],
        },
    ]
    assert (body["temperature"], body["p"], body["frequency_penalty"]) == (0.3, 0.8, 0.5)
    assert body["max_tokens"] == spec.max_output
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "look at this"


def test_plain_string_messages_pass_through() -> None:
    assert cohere_message(ChatMessage("user", "hi")) == {"role": "user", "content": "hi"}


async def test_counts_usage_when_message_end_has_none(provider: CohereProvider) -> None:
    request = request_for("fail-nousage")
    events = await collect(provider, request)
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert text == "".join(token_text(i) for i in range(TOKENS))
    assert events[-1] == Usage(count_message_tokens(request.messages), count_tokens(text))


async def test_missing_key_fails_without_calling_upstream(fake: FakeCohereServer) -> None:
    provider = CohereProvider(fake.base_url, "", timeout=TIMEOUT)
    with pytest.raises(ProviderError) as caught:
        await collect(provider, request_for("command-r"))
    await provider.aclose()
    assert caught.value.code is ProviderErrorCode.AUTH
    assert "COHERE_API_KEY" in caught.value.message
    assert fake.stats.requests == []


@pytest.mark.parametrize(
    ("upstream", "code", "retryable", "hint"),
    [
        ("fail-401", ProviderErrorCode.AUTH, False, "COHERE_API_KEY"),
        ("fail-429", ProviderErrorCode.RATE_LIMITED, True, f"after {RETRY_AFTER_SECONDS} s"),
        ("fail-500", ProviderErrorCode.UNAVAILABLE, True, "HTTP 500"),
        ("fail-400", ProviderErrorCode.BAD_REQUEST, False, "too many tokens"),
        ("fail-hang", ProviderErrorCode.TIMEOUT, True, "PROVIDER_TIMEOUT_SECONDS"),
    ],
)
async def test_failures_before_the_stream(
    provider: CohereProvider, upstream: str, code: ProviderErrorCode, retryable: bool, hint: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        await collect(provider, request_for(upstream))
    assert caught.value.code is code
    assert caught.value.retryable is retryable
    assert hint in caught.value.message
    assert "command-test" in caught.value.message


@pytest.mark.parametrize(
    ("upstream", "code", "hint"),
    [
        ("fail-malformed", ProviderErrorCode.MALFORMED, "before message-end"),
        ("fail-drop", ProviderErrorCode.UNAVAILABLE, "closed mid-response"),
        ("fail-truncate", ProviderErrorCode.MALFORMED, "before message-end"),
        ("fail-stall", ProviderErrorCode.TIMEOUT, f"{TIMEOUT:g} s"),
    ],
)
async def test_failures_mid_stream_after_some_deltas(
    provider: CohereProvider, upstream: str, code: ProviderErrorCode, hint: str
) -> None:
    received: list[StreamEvent] = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(request_for(upstream)):
            received.append(event)
    assert received == [Delta(token_text(i)) for i in range(FAIL_AFTER_TOKENS)]
    assert caught.value.code is code
    assert hint in caught.value.message


async def test_cancelling_mid_stream_closes_the_upstream_connection() -> None:
    async with fake_cohere_server(tokens=10_000, tokens_per_second=100) as fake:
        provider = CohereProvider(fake.base_url, "k", timeout=5)
        stream = provider.stream(request_for("command-r"))
        first = [await anext(stream) for _ in range(3)]
        assert first == [Delta(token_text(i)) for i in range(3)]
        await stream.aclose()
        for _ in range(100):
            if fake.stats.disconnected_streams:
                break
            await asyncio.sleep(0.02)
        assert fake.stats.disconnected_streams == 1
        assert fake.stats.open_streams == 0
        await provider.aclose()
