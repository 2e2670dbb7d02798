"""Chat over Cohere's v2 API (`chat_stream`), reporting billed tokens as usage.

Cohere's SDK skips events it can't parse, so a stream that ends without `message-end`
is treated as malformed rather than as a short answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from backend.providers import failures
from backend.providers.base import (
    ChatMessage,
    ChatRequest,
    Delta,
    ProviderError,
    StreamEvent,
    Usage,
    finish_reason_of,
)
from backend.providers.openai_compatible import upstream_label
from backend.providers.tokens import count_message_tokens, count_tokens

if TYPE_CHECKING:
    import cohere
    import httpx


def cohere_message(message: ChatMessage) -> dict[str, Any]:
    """Cohere v2 takes OpenAI-like messages; only user turns may carry images."""
    if isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    if message.role != "user":
        text = "".join(str(p.get("text", "")) for p in message.content if p.get("type") == "text")
        return {"role": message.role, "content": text}
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if part.get("type") == "text":
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif part.get("type") == "image_url":
            parts.append({"type": "image_url", "image_url": part.get("image_url") or {}})
    return {"role": "user", "content": parts}


def sampling_arguments(request: ChatRequest) -> dict[str, Any]:
    params = request.params
    arguments: dict[str, Any] = {"max_tokens": params.max_tokens or request.model.max_output}
    names = {
        "temperature": "temperature",
        "top_p": "p",
        "presence_penalty": "presence_penalty",
        "frequency_penalty": "frequency_penalty",
    }
    for ours, theirs in names.items():
        value = getattr(params, ours)
        if value is not None:
            arguments[theirs] = value
    return arguments


def usage_of(event: Any) -> Usage | None:
    """Billed units are what Cohere charges for; raw token counts are the fallback."""
    usage = getattr(event.delta, "usage", None) if event.delta else None
    if usage is None:
        return None
    for counts in (usage.billed_units, usage.tokens):
        if counts is not None and counts.input_tokens is not None:
            return Usage(int(counts.input_tokens), int(counts.output_tokens or 0))
    return None


def translate(exc: Exception, label: str, timeout: float, key_setting: str) -> ProviderError:
    """A Cohere SDK failure (or one it let through) as a ProviderError; shared with the
    Cohere embedding provider."""
    # Start-up time: loaded by whoever built a Cohere client, so free here.
    from cohere.core.api_error import ApiError

    if isinstance(exc, ApiError) and exc.status_code is not None:
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = str(body.get("message") or f"HTTP {exc.status_code}")
        return failures.from_status(label, key_setting, exc.status_code, detail, exc.headers)
    translated = failures.from_transport(label, exc, timeout)
    if translated is not None:
        return translated
    if isinstance(exc, ValueError | KeyError | TypeError | AttributeError):
        return failures.malformed(label, exc.__class__.__name__)
    return failures.unavailable(label, exc.__class__.__name__)


class CohereProvider:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        max_retries: int = 0,
        key_setting: str = "COHERE_API_KEY",
    ) -> None:
        self.timeout = timeout
        self.max_retries = max_retries
        self.key_setting = key_setting
        self.api_key = api_key
        # The SDK costs ~0.5 s to import: only a process with a Cohere model pays it.
        import cohere
        import httpx

        self.http: httpx.AsyncClient = httpx.AsyncClient(timeout=timeout)
        self.client: cohere.AsyncClientV2 = cohere.AsyncClientV2(
            api_key=api_key or "unset", base_url=base_url, timeout=timeout, httpx_client=self.http
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        label = upstream_label(request)
        if not self.api_key:
            raise failures.unauthorized(label, self.key_setting)
        texts: list[str] = []
        usage: Usage | None = None
        reported: str | None = None
        ended = False
        try:
            events = self.client.chat_stream(
                model=request.model.upstream,
                messages=[cohere_message(m) for m in request.messages],  # type: ignore[misc]
                request_options={"max_retries": self.max_retries},
                **sampling_arguments(request),
            )
            async with contextlib.aclosing(events):
                async for event in events:
                    if event.type == "content-delta":
                        text = event.delta.message.content.text if event.delta else None
                        if text:
                            texts.append(text)
                            yield Delta(text)
                    elif event.type == "message-end":
                        ended = True
                        usage = usage_of(event)
                        reported = getattr(event.delta, "finish_reason", None)
        except ProviderError:
            raise
        except Exception as exc:
            raise self.translate(exc, label) from exc
        if not ended:
            raise failures.malformed(label, "the stream ended before message-end")
        counted = usage or Usage(
            count_message_tokens(request.messages), count_tokens("".join(texts))
        )
        yield replace(counted, finish_reason=finish_reason_of(reported))

    def translate(self, exc: Exception, label: str) -> ProviderError:
        return translate(exc, label, self.timeout, self.key_setting)

    async def aclose(self) -> None:
        await self.http.aclose()
