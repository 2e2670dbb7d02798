"""Events of a task's stream: what workers append and every channel delivers.

On SSE each event is one frame (`id:` = the Redis Stream entry id, `event:` = `type`,
`data:` = the JSON of the model without `type`). On the WebSocket the same JSON is
sent with `type`, `id` and `task_id` added.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter


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


class ReferenceEvent(BaseModel):
    type: Literal[EventType.REFERENCE] = EventType.REFERENCE
    chunks: list[dict] = Field(default_factory=list)


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


class ErrorEvent(BaseModel):
    type: Literal[EventType.ERROR] = EventType.ERROR
    code: str
    message: str


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
