"""OpenAI's chat completions on the wire: the request, `chat.completion` and the streamed
`chat.completion.chunk`, as the official SDK sends and parses them.

Fields the SDK may send that Sluice does not act on (`n`, `stop`, `tools`, `user`,
`seed`, ...) are accepted and ignored, so an unchanged client is never refused for them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from schemas.common import RequestBody

PLACEHOLDER_MODEL = "model"


class ImageUrl(RequestBody):
    url: str = Field(min_length=1, max_length=16_000_000)
    detail: str | None = None


class ContentPart(RequestBody):
    """`{"type":"text","text":...}` or `{"type":"image_url","image_url":{"url":...}}`."""

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None


class OpenAIMessage(RequestBody):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(RequestBody):
    include_usage: StrictBool | None = None


class ChatCompletionRequest(RequestBody):
    """OpenAI's request. On `/v1/chat/completions` `model` is a chat assistant's id or a
    model name (GET /api/models lists them); on the chat-scoped paths it is the
    assistant's model, `"model"` (RAGFlow's placeholder) or another model to use."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=1000)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    reference: StrictBool | None = Field(
        None, description="Leave references out with false (RAGFlow's extra_body.reference)"
    )
    extra_body: dict[str, Any] | None = Field(
        None, description="RAGFlow's extra_body: `reference` (bool) is read, the rest ignored"
    )

    def wants_reference(self) -> bool:
        """References go out unless the client says no (top level or in `extra_body`)."""
        nested = (self.extra_body or {}).get("reference")
        return self.reference is not False and nested is not False


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    reference: list[dict[str, Any]] | None = Field(
        None, description="The chunks an answer over knowledge bases cites (RAGFlow's field)"
    )


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reference: list[dict[str, Any]] | None = Field(
        None, description="On the last chunk of an answer over knowledge bases: the chunks it cites"
    )


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class StreamError(BaseModel):
    """A failure after the stream started: the frame the SDK raises `APIError` on."""

    error: OpenAIErrorDetail
