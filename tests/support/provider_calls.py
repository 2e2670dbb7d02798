"""Calling a chat provider the way the worker does, for the provider tests."""

from __future__ import annotations

from backend.providers.base import (
    ChatMessage,
    ChatProvider,
    ChatRequest,
    ModelSpec,
    SamplingParams,
    StreamEvent,
)


def user_request(spec: ModelSpec, text: str = "hello there", **params: float) -> ChatRequest:
    """One user message to `spec`, with sampling `params` (temperature=..., max_tokens=...)."""
    return ChatRequest(spec, [ChatMessage("user", text)], SamplingParams(**params))


async def collect(provider: ChatProvider, request: ChatRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]
