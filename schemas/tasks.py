"""Chat tasks on the wire: starting a turn, and its status for REST-polling clients."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from backend.models.tasks import TaskState
from schemas.chats import ContentPart
from schemas.common import RequestBody, exactly_one_of
from schemas.ids import PublicId


class TaskCreate(RequestBody):
    """Ask a question in a session: `question` (plain text) or `content` (parts)."""

    model_config = ConfigDict(
        json_schema_extra=exactly_one_of(question={"type": "string"}, content={"type": "array"})
    )

    session_id: PublicId
    question: str | None = Field(None, min_length=1, max_length=200_000)
    content: list[ContentPart] | None = Field(None, min_length=1, max_length=32)
    stream: StrictBool = False

    @model_validator(mode="after")
    def question_or_content(self) -> TaskCreate:
        if (self.question is None) == (self.content is None):
            raise ValueError("send exactly one of 'question' (text) or 'content' (parts)")
        return self

    def parts(self) -> list[dict]:
        if self.question is not None:
            return [{"type": "text", "text": self.question}]
        return [part.model_dump(exclude_none=True) for part in self.content or []]


class TaskUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class TaskError(BaseModel):
    code: str
    message: str


class TaskOut(BaseModel):
    task_id: str
    status: TaskState
    session_id: str | None
    model: str
    user_message_id: str | None
    message_id: str | None
    usage: TaskUsage
    cost: int
    error: TaskError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queued_ms: float | None = Field(None, description="Time from creation to start.")
    duration_ms: float | None = Field(None, description="Time from start to finish.")
    queue_position: int | None = Field(
        None,
        description="While the answer waits behind other users' for the model (status "
        "`running`, no token yet): its place in line, 1 = next to start. Else null.",
    )
