"""Chat over any OpenAI-compatible endpoint: OpenAI, DeepSeek, DashScope (compatible
mode), vLLM, Ollama. Streams with `include_usage` and falls back to counting tokens for
servers that don't report usage.

The stream is read by `openai_sse.ChatStreamClient` (aiohttp + orjson), not the `openai`
SDK: see that module for why and for what it takes over. `translate` maps the SDK's
failures for the non-streaming calls that still use it (embeddings, images).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from backend.providers import failures
from backend.providers.base import (
    Burst,
    ChatRequest,
    Delta,
    ProviderError,
    SamplingParams,
    StreamEvent,
    Usage,
)
from backend.providers.openai_sse import ChatStreamClient
from backend.providers.tokens import count_message_tokens, count_tokens

CONNECT_TIMEOUT_SECONDS = 10.0


def upstream_label(request: ChatRequest) -> str:
    return f"The provider of model '{request.model.id}'"


def sampling_arguments(params: SamplingParams, max_output: int) -> dict[str, Any]:
    arguments: dict[str, Any] = {"max_tokens": params.max_tokens or max_output}
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = getattr(params, name)
        if value is not None:
            arguments[name] = value
    return arguments


def translate(exc: Exception, label: str, timeout: float, key_setting: str) -> ProviderError:
    """An OpenAI SDK failure (or one it let through) as a ProviderError."""
    # Not imported here (~0.3-1.7 s of start-up for a streaming path that never uses it):
    # an SDK exception can only exist once its caller has imported the SDK.
    openai = sys.modules.get("openai")
    if openai is None:
        return translate_other(exc, label, timeout)
    if isinstance(exc, openai.APITimeoutError) and not failures.refused(exc):
        return failures.timed_out(label, timeout)
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = str(body.get("message") or exc.message)
        return failures.from_status(
            label, key_setting, exc.status_code, detail, exc.response.headers
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return failures.malformed(label, "unexpected response shape")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        translated = cause and failures.from_transport(label, cause, timeout)
        return translated or failures.unavailable(label, "could not connect")
    return translate_other(exc, label, timeout)


def translate_other(exc: Exception, label: str, timeout: float) -> ProviderError:
    """A failure that is not the SDK's own: a transport error it let through, or a bug."""
    translated = failures.from_transport(label, exc, timeout)
    if translated is not None:
        return translated
    if isinstance(exc, ValueError | KeyError | TypeError):
        return failures.malformed(label, exc.__class__.__name__)
    return failures.unavailable(label, exc.__class__.__name__)


class OpenAICompatibleProvider:
    """One chat stream client (and its aiohttp connection pool, up to 1,000 connections)
    per endpoint and key."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        max_retries: int = 0,
        key_setting: str = "OPENAI_API_KEY",
    ) -> None:
        self.timeout = timeout
        self.key_setting = key_setting
        self.client = ChatStreamClient(
            base_url,
            api_key,
            timeout=timeout,
            connect_timeout=min(timeout, CONNECT_TIMEOUT_SECONDS),
            max_retries=max_retries,
            key_setting=key_setting,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        async with aclosing(self.bursts(request)) as bursts:
            async for burst in bursts:
                for item in burst:
                    yield Delta(item) if isinstance(item, str) else item

    def bursts(self, request: ChatRequest) -> AsyncGenerator[Burst, None]:
        """`stream`'s events a network read at a time, each delta as its bare text: what
        the chat worker's relay takes (workers/jobs/relay.py). The reader's own
        generator, not one wrapping it: a generator step fewer a read, no `Delta` a
        token."""
        label = upstream_label(request)
        payload = {
            "model": request.model.upstream,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            **sampling_arguments(request.params, request.model.max_output),
        }

        def counted(text: str) -> Usage:
            return Usage(count_message_tokens(request.messages), count_tokens(text))

        def translated(exc: Exception) -> ProviderError:
            return translate(exc, label, self.timeout, self.key_setting)

        return self.client.bursts(payload, label, counted=counted, translate=translated)

    async def aclose(self) -> None:
        await self.client.aclose()
