"""The one streaming interface every chat provider implements.

A provider turns a `ChatRequest` into an async stream of `Delta`s followed by exactly
one `Usage`; failures raise `ProviderError` with a message the user can act on. A
provider that serves a bounded number of generations at once (the local model) may
first yield `Queued` notices while the request waits for its turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Capability(StrEnum):
    TEXT = "text"
    VISION = "vision"
    IMAGE_GENERATION = "image_generation"


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model registry (configured in settings)."""

    id: str
    provider: str
    upstream: str
    context_window: int = 8192
    max_output: int = 1024
    prompt_price: float = 0.0
    completion_price: float = 0.0
    capabilities: frozenset[Capability] = frozenset({Capability.TEXT})


@dataclass(frozen=True)
class ChatMessage:
    role: str
    # A plain string, or OpenAI-style parts: {"type": "text", "text": ...} /
    # {"type": "image_url", "image_url": {"url": ...}}.
    content: str | list[dict[str, Any]]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class ChatRequest:
    model: ModelSpec
    messages: list[ChatMessage]
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass(frozen=True)
class Delta:
    text: str


class FinishReason(StrEnum):
    """Why generation stopped: the model ended its answer, or the token limit cut it
    (OpenAI's `"length"`, which clients use to offer "continue")."""

    STOP = "stop"
    LENGTH = "length"


# Providers' names for "the token limit cut it": OpenAI and llama.cpp, Cohere, Anthropic.
LENGTH_REASONS = frozenset({"length", "MAX_TOKENS", "max_tokens"})


def finish_reason_of(reported: str | None) -> FinishReason:
    return FinishReason.LENGTH if reported in LENGTH_REASONS else FinishReason.STOP


@dataclass(frozen=True)
class Usage:
    """The last event of every stream: its token counts and why it stopped."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason = FinishReason.STOP


class ProviderErrorCode(StrEnum):
    TIMEOUT = "provider_timeout"
    RATE_LIMITED = "provider_rate_limited"
    AUTH = "provider_auth"
    BAD_REQUEST = "provider_bad_request"
    UNAVAILABLE = "provider_unavailable"
    MALFORMED = "provider_malformed_response"


class ProviderError(Exception):
    """`retry_after` carries the upstream's Retry-After (seconds) when it sent one."""

    def __init__(
        self,
        code: ProviderErrorCode,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class Queued:
    """The request waits behind others for the model: `position` is its place in line
    (1 = next to start), sent on joining and on each move; 0 once generation starts."""

    position: int


StreamEvent = Delta | Usage | Queued

# A provider's events of one network read, in order, each delta as its bare text: what a
# provider with a `bursts(request)` method yields (the relay takes a whole read at once).
Burst = list[str | Usage | Queued]


class ChatProvider(Protocol):
    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Yield deltas in order, then one Usage (after Queued notices, if it had to wait).
        Raise ProviderError on failure."""
        ...

    async def aclose(self) -> None: ...
