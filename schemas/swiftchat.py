"""SwiftChat's backend API, served as a façade: its request and response shapes, unchanged.

Responses are SwiftChat's bare JSON (no envelope), because its app reads the fields at
the top level; errors still use the error envelope. The app versions an administrator
manages at /api/v1/app-versions are enveloped as usual.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StringConstraints

from schemas.common import RequestBody

Version = Annotated[str, StringConstraints(pattern=r"^\d{1,4}\.\d{1,4}\.\d{1,4}$")]


class Base64Source(RequestBody):
    bytes: str = Field(description="Base64-encoded content")


class ImageBlock(RequestBody):
    format: Literal["png", "jpeg", "gif", "webp"]
    source: Base64Source


class DocumentBlock(RequestBody):
    format: str
    name: str = "document"
    source: Base64Source


class VideoBlock(RequestBody):
    format: str
    source: Base64Source


class ContentBlock(RequestBody):
    """One Bedrock converse content block: `text`, `image`, `document` or `video`.

    SwiftChat's app sends `video` for an attached clip; no model served here reads video,
    so it is refused (415) rather than silently dropped.
    """

    text: str | None = None
    image: ImageBlock | None = None
    document: DocumentBlock | None = None
    video: VideoBlock | None = None


class ConverseMessage(RequestBody):
    role: Literal["user", "assistant"]
    content: list[ContentBlock] = Field(min_length=1)


class SystemBlock(RequestBody):
    text: str


class ConverseRequest(RequestBody):
    messages: list[ConverseMessage] = Field(min_length=1)
    modelId: str | None = Field(None, description="A model id from /api/models; default model")
    system: list[SystemBlock] | None = None
    region: str | None = Field(None, description="Accepted for compatibility, ignored")
    enableThinking: StrictBool | None = Field(
        None,
        description="Accepted for compatibility, ignored: no reasoning deltas are streamed",
    )


class TokenUsage(BaseModel):
    inputTokens: int
    outputTokens: int
    totalTokens: int


class StreamMetrics(BaseModel):
    latencyMs: int = Field(description="From the request to the end of the answer")


class MessageStart(BaseModel):
    role: Literal["assistant"] = "assistant"


class TextDelta(BaseModel):
    text: str


class ContentBlockDelta(BaseModel):
    delta: TextDelta
    contentBlockIndex: int = 0


class ContentBlockStop(BaseModel):
    contentBlockIndex: int = 0


class MessageStop(BaseModel):
    stopReason: Literal["end_turn"] = "end_turn"


class StreamMetadata(BaseModel):
    usage: TokenUsage
    metrics: StreamMetrics


class ConverseStreamEvent(BaseModel):
    """One item of Bedrock's ConverseStream output, as `/api/converse/v2` sends it: an
    object with exactly one of these keys, e.g. `{"contentBlockDelta": {"delta":
    {"text": "Hi"}, "contentBlockIndex": 0}}`."""

    messageStart: MessageStart | None = None
    contentBlockDelta: ContentBlockDelta | None = None
    contentBlockStop: ContentBlockStop | None = None
    messageStop: MessageStop | None = None
    metadata: StreamMetadata | None = None

    def encode(self) -> bytes:
        """The JSON object and a blank line: SwiftChat splits the body on `\\n\\n`."""
        return self.model_dump_json(exclude_none=True).encode() + b"\n\n"


class ModelsRequest(RequestBody):
    region: str | None = Field(None, description="Accepted for compatibility, ignored")


class ModelEntry(BaseModel):
    modelId: str
    modelName: str


class ModelsResponse(BaseModel):
    textModel: list[ModelEntry]
    imageModel: list[ModelEntry]


class ImageRequest(RequestBody):
    prompt: str = Field(min_length=1)
    modelId: str | None = None
    width: int = Field(1024, ge=64, le=4096)
    height: int = Field(1024, ge=64, le=4096)
    region: str | None = Field(None, description="Accepted for compatibility, ignored")
    refImages: list[dict[str, Any]] | None = Field(
        None, description="Accepted for compatibility, ignored"
    )


class ImageResponse(BaseModel):
    image: str = Field(description="Base64-encoded image")


class UpgradeRequest(RequestBody):
    os: str = Field(min_length=1, description="Platform, e.g. android, mac")
    version: Version


class UpgradeResponse(BaseModel):
    needUpgrade: bool
    version: str
    url: str


class AppVersionUpdate(RequestBody):
    version: Version
    url: str = Field("", max_length=1024)
    notes: str = ""


class AppVersionOut(BaseModel):
    platform: str
    version: str
    url: str
    notes: str
    updated_at: datetime
