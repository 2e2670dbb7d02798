"""Events of a task's stream: what workers append and every channel delivers.

On SSE each event is one frame (`id:` = the Redis Stream entry id, `event:` = `type`,
`data:` = the JSON of the model without `type`). On the WebSocket the same JSON is
sent with `type`, `id` and `task_id` added.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
)

from backend.providers.base import FinishReason


class EventType(StrEnum):
    QUEUED = "queued"
    TOKEN = "token"
    REFERENCE = "reference"
    USAGE = "usage"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (EventType.DONE, EventType.ERROR, EventType.CANCELLED)


class QueuedEvent(BaseModel):
    """The answer waits behind other users' for the model (the local model generates a
    few answers at once): sent on joining the line and on each move up; `position` 0
    when generation starts. Answers that start at once send none."""

    type: Literal[EventType.QUEUED] = EventType.QUEUED
    position: int = Field(description="Place in line, 1 = next to start; 0 = started")


class TokenEvent(BaseModel):
    type: Literal[EventType.TOKEN] = EventType.TOKEN
    delta: str


class ReferenceChunk(BaseModel):
    """One retrieved chunk as RAGFlow's answers carry it; `[ID:n]` in an answer cites
    `chunks[n]` of its reference."""

    id: str
    content: str
    document_id: str
    document_name: str
    dataset_id: str
    image_id: str = ""
    positions: list[list[int]] = Field(default_factory=list)
    url: str | None = None
    similarity: float
    vector_similarity: float
    term_similarity: float
    doc_type: str = ""


class DocumentAggregate(BaseModel):
    """RAGFlow's `doc_aggs` entry: how many of the chunks come from one document."""

    doc_name: str
    doc_id: str
    count: int


class Reference(BaseModel):
    """The sources of an answer over knowledge bases (RAGFlow's `reference`)."""

    total: int = Field(0, description="Chunks that passed the similarity threshold")
    chunks: list[ReferenceChunk] = Field(default_factory=list)
    doc_aggs: list[DocumentAggregate] = Field(default_factory=list)


class ReferenceEvent(Reference):
    """Sent once retrieval is done, before the first token: the chunks given to the model
    (in `[ID:n]` order). The answer's final reference, `doc_aggs` narrowed to the
    documents it cites, comes with `done`."""

    type: Literal[EventType.REFERENCE] = EventType.REFERENCE


class UsageEvent(BaseModel):
    type: Literal[EventType.USAGE] = EventType.USAGE
    prompt_tokens: int
    completion_tokens: int


class DoneEvent(BaseModel):
    type: Literal[EventType.DONE] = EventType.DONE
    message_id: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: int
    reference: Reference | None = Field(
        None, description="An answer over knowledge bases: its sources, stored with the message"
    )
    finish_reason: FinishReason = Field(
        FinishReason.STOP,
        description='Why generation stopped: "stop", or "length" when max_tokens cut it',
    )
    answer: str | None = Field(
        None,
        description="The whole answer, when it differs from the tokens streamed: citations "
        "`[ID:n]` inserted after generation (AUTO_CITATIONS); absent otherwise",
    )


class ErrorEvent(BaseModel):
    type: Literal[EventType.ERROR] = EventType.ERROR
    code: str
    message: str
    message_id: str | None = Field(
        None,
        description="The partial answer stored when the worker died mid-answer (code "
        "`worker_lost`): the assistant message holding what was streamed; absent otherwise",
    )

    @model_serializer(mode="wrap")
    def without_absent_message(self, handler: SerializerFunctionWrapHandler):
        """`message_id` only when a partial answer was stored: other errors keep their
        `{code, message}` shape. (No return annotation: with one, the serialization
        schema in the OpenAPI document would be that type's, not this model's fields.)"""
        data = handler(self)
        if data.get("message_id") is None:
            data.pop("message_id", None)
        return data


class CancelledEvent(BaseModel):
    type: Literal[EventType.CANCELLED] = EventType.CANCELLED
    message_id: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: int = 0


TaskEvent = Annotated[
    QueuedEvent
    | TokenEvent
    | ReferenceEvent
    | UsageEvent
    | DoneEvent
    | ErrorEvent
    | CancelledEvent,
    Field(discriminator="type"),
]
task_event_adapter: TypeAdapter[TaskEvent] = TypeAdapter(TaskEvent)
