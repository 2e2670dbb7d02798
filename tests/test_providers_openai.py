"""The OpenAI-compatible provider against the fake upstream, over real sockets."""

from __future__ import annotations

import asyncio
import socket
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
from backend.providers.openai_compatible import OpenAICompatibleProvider
from backend.providers.tokens import count_message_tokens, count_tokens
from tests.support.fake_http import FAIL_AFTER_TOKENS, RETRY_AFTER_SECONDS, token_text
from tests.support.fake_openai import FakeOpenAIServer, fake_openai_server, prompt_tokens
from tests.support.provider_calls import collect, user_request

TOKENS = 12
TIMEOUT = 0.5


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with fake_openai_server(tokens=TOKENS) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeOpenAIServer) -> AsyncIterator[OpenAICompatibleProvider]:
    provider = OpenAICompatibleProvider(fake.base_url, "test-key", timeout=TIMEOUT)
    yield provider
    await provider.aclose()


def request_for(upstream: str, text: str = "hello there", **params: float) -> ChatRequest:
    return user_request(
        ModelSpec(id="gpt-test", provider="openai", upstream=upstream, max_output=64),
        text,
        **params,
    )


async def test_streams_deltas_in_order_then_provider_usage(
    provider: OpenAICompatibleProvider, fake: FakeOpenAIServer
) -> None:
    events = await collect(provider, request_for("fake-gpt"))
    assert events[:-1] == [Delta(token_text(i)) for i in range(TOKENS)]
    body = fake.stats.requests[-1].json()
    assert events[-1] == Usage(prompt_tokens(body["messages"]), TOKENS)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_sends_messages_model_and_sampling_parameters(
    provider: OpenAICompatibleProvider, fake: FakeOpenAIServer
) -> None:
    parts = [
        {"type": "text", "text": "describe this picture"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    spec = ModelSpec(id="vision-test", provider="openai", upstream="echo", max_output=32)
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", parts)]
    params = SamplingParams(temperature=0.2, top_p=0.9, presence_penalty=0.1, max_tokens=None)
    events = await collect(provider, ChatRequest(spec, messages, params))

    body = fake.stats.requests[-1].json()
    assert body["model"] == "echo"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": parts},
    ]
    assert (body["temperature"], body["top_p"], body["presence_penalty"]) == (0.2, 0.9, 0.1)
    assert "frequency_penalty" not in body
    assert body["max_tokens"] == spec.max_output
    assert fake.stats.requests[-1].headers["authorization"] == "Bearer test-key"
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert text == "describe this picture"


async def test_max_tokens_caps_the_answer(provider: OpenAICompatibleProvider) -> None:
    events = await collect(provider, request_for("fake-gpt", max_tokens=4))
    assert [e for e in events if isinstance(e, Delta)] == [Delta(token_text(i)) for i in range(4)]
    assert events[-1].completion_tokens == 4
    # The upstream's finish_reason "length" is carried (OpenAI clients offer "continue").
    assert events[-1].finish_reason is FinishReason.LENGTH
    whole = await collect(provider, request_for("fake-gpt"))
    assert whole[-1].finish_reason is FinishReason.STOP


async def test_counts_usage_with_tiktoken_when_upstream_reports_none(
    provider: OpenAICompatibleProvider,
) -> None:
    request = request_for("fail-nousage")
    events = await collect(provider, request)
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert text == "".join(token_text(i) for i in range(TOKENS))
    assert events[-1] == Usage(count_message_tokens(request.messages), count_tokens(text))


@pytest.mark.parametrize(
    ("upstream", "code", "retryable", "hint"),
    [
        ("fail-401", ProviderErrorCode.AUTH, False, "OPENAI_API_KEY"),
        ("fail-429", ProviderErrorCode.RATE_LIMITED, True, f"after {RETRY_AFTER_SECONDS} s"),
        ("fail-500", ProviderErrorCode.UNAVAILABLE, True, "HTTP 500"),
        ("fail-400", ProviderErrorCode.BAD_REQUEST, False, "maximum context length"),
        ("fail-hang", ProviderErrorCode.TIMEOUT, True, "PROVIDER_TIMEOUT_SECONDS"),
    ],
)
async def test_failures_before_the_stream(
    provider: OpenAICompatibleProvider,
    upstream: str,
    code: ProviderErrorCode,
    retryable: bool,
    hint: str,
) -> None:
    with pytest.raises(ProviderError) as caught:
        await collect(provider, request_for(upstream))
    assert caught.value.code is code
    assert caught.value.retryable is retryable
    assert hint in caught.value.message
    assert "gpt-test" in caught.value.message


async def test_rate_limit_carries_retry_after(provider: OpenAICompatibleProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        await collect(provider, request_for("fail-429"))
    assert caught.value.retry_after == RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    ("upstream", "code", "hint"),
    [
        ("fail-malformed", ProviderErrorCode.MALFORMED, "malformed"),
        ("fail-drop", ProviderErrorCode.UNAVAILABLE, "closed mid-response"),
        ("fail-truncate", ProviderErrorCode.MALFORMED, "without a finish_reason"),
        ("fail-stall", ProviderErrorCode.TIMEOUT, f"{TIMEOUT:g} s"),
    ],
)
async def test_failures_mid_stream_after_some_deltas(
    provider: OpenAICompatibleProvider, upstream: str, code: ProviderErrorCode, hint: str
) -> None:
    received: list[StreamEvent] = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(request_for(upstream)):
            received.append(event)
    assert received == [Delta(token_text(i)) for i in range(FAIL_AFTER_TOKENS)]
    assert caught.value.code is code
    assert caught.value.retryable
    assert hint in caught.value.message


async def test_wrong_api_key_is_an_auth_error() -> None:
    async with fake_openai_server(api_key="the-right-key") as fake:
        provider = OpenAICompatibleProvider(
            fake.base_url, "a-wrong-key", timeout=TIMEOUT, key_setting="IMAGE_API_KEY"
        )
        with pytest.raises(ProviderError) as caught:
            await collect(provider, request_for("fake-gpt"))
        await provider.aclose()
    assert caught.value.code is ProviderErrorCode.AUTH
    assert "IMAGE_API_KEY" in caught.value.message


async def test_unreachable_upstream_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAICompatibleProvider(f"http://127.0.0.1:{port}/v1", "k", timeout=TIMEOUT)
    with pytest.raises(ProviderError) as caught:
        await collect(provider, request_for("fake-gpt"))
    await provider.aclose()
    assert caught.value.code is ProviderErrorCode.UNAVAILABLE
    assert caught.value.retryable


async def test_cancelling_mid_stream_closes_the_upstream_connection() -> None:
    async with fake_openai_server(tokens=10_000, tokens_per_second=100) as fake:
        provider = OpenAICompatibleProvider(fake.base_url, "k", timeout=5)
        stream = provider.stream(request_for("fake-gpt"))
        first = [await anext(stream) for _ in range(3)]
        assert first == [Delta(token_text(i)) for i in range(3)]
        assert fake.stats.open_streams == 1
        await stream.aclose()
        for _ in range(100):
            if fake.stats.disconnected_streams:
                break
            await asyncio.sleep(0.02)
        assert fake.stats.disconnected_streams == 1
        assert fake.stats.open_streams == 0
        assert fake.stats.completed_streams == 0
        await provider.aclose()


async def test_concurrent_streams_stay_separate(provider: OpenAICompatibleProvider) -> None:
    texts = [f"stream number {i}" for i in range(8)]
    results = await asyncio.gather(*(collect(provider, request_for("echo", t)) for t in texts))
    for text, events in zip(texts, results, strict=True):
        assert "".join(e.text for e in events if isinstance(e, Delta)) == text
