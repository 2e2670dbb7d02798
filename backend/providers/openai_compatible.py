"""Chat over any OpenAI-compatible endpoint: OpenAI, DeepSeek, DashScope (compatible
mode), vLLM, Ollama. Streams with `include_usage` and falls back to counting tokens for
servers that don't report usage.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import openai

from backend.providers import failures
from backend.providers.base import (
    ChatRequest,
    Delta,
    ProviderError,
    SamplingParams,
    StreamEvent,
    Usage,
    finish_reason_of,
)
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
    translated = failures.from_transport(label, exc, timeout)
    if translated is not None:
        return translated
    if isinstance(exc, ValueError | KeyError | TypeError):
        return failures.malformed(label, exc.__class__.__name__)
    return failures.unavailable(label, exc.__class__.__name__)


@dataclass(frozen=True)
class Chunk:
    """The parts of one `chat.completion.chunk` Sluice uses."""

    text: str
    finished: bool
    usage: Usage | None
    finish_reason: str | None = None


def chunk_of(line: str, label: str) -> Chunk | None:
    """One SSE line of a chat completion stream; None for lines that carry no chunk."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    payload = json.loads(data)
    if not isinstance(payload, dict):
        raise failures.malformed(label, "a chunk is not a JSON object")
    if error := payload.get("error"):
        detail = error.get("message") if isinstance(error, dict) else str(error)
        raise failures.unavailable(label, f"it reported an error mid-stream: {detail}")
    reported = payload.get("usage")
    usage = Usage(reported["prompt_tokens"], reported["completion_tokens"]) if reported else None
    choices = payload.get("choices") or []
    if not choices:
        return Chunk("", False, usage)
    choice = choices[0]
    delta = choice.get("delta") or {}
    reason = choice.get("finish_reason")
    return Chunk(delta.get("content") or "", reason is not None, usage, reason)


class OpenAICompatibleProvider:
    """One AsyncOpenAI client (and its aiohttp connection pool, up to the SDK's 1,000
    connections) per endpoint and key."""

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
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            # Self-hosted servers (vLLM, Ollama) take any key; the SDK insists on one.
            api_key=api_key or "unset",
            timeout=openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_SECONDS)),
            max_retries=max_retries,
            # aiohttp's C parser reads a token chunk for about a fifth less CPU than the
            # default httpx transport; the worker reads one chunk per token of every stream.
            http_client=openai.DefaultAioHttpClient(),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        label = upstream_label(request)
        texts: list[str] = []
        usage: Usage | None = None
        finished = False
        reported: str | None = None
        try:
            # The SDK sends, authenticates and retries the request and maps error statuses,
            # but two of its per-call costs are skipped: the body goes as `extra_body`, not
            # through its typed-params transform (0.8 ms of CPU per request), and chunks are
            # read raw, not parsed into SDK models (more CPU than the rest of a token's path
            # through Sluice together). `messages` is required by the signature; the
            # extra body's replaces it.
            async with self.client.chat.completions.with_streaming_response.create(
                model=request.model.upstream,
                messages=[],
                stream=True,
                extra_body={
                    "messages": [{"role": m.role, "content": m.content} for m in request.messages],
                    "stream_options": {"include_usage": True},
                    **sampling_arguments(request.params, request.model.max_output),
                },
            ) as response:
                async for line in response.iter_lines():
                    chunk = chunk_of(line, label)
                    if chunk is None:
                        continue
                    if chunk.usage is not None:
                        usage = chunk.usage
                    finished = finished or chunk.finished
                    reported = chunk.finish_reason or reported
                    if chunk.text:
                        texts.append(chunk.text)
                        yield Delta(chunk.text)
        except ProviderError:
            raise
        except Exception as exc:
            raise translate(exc, label, self.timeout, self.key_setting) from exc
        if not finished:
            raise failures.malformed(label, "the stream ended without a finish_reason")
        counted = usage or Usage(
            count_message_tokens(request.messages), count_tokens("".join(texts))
        )
        yield replace(counted, finish_reason=finish_reason_of(reported))

    async def aclose(self) -> None:
        await self.client.close()
