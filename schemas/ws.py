"""The WebSocket protocol of `/api/v1/ws`: JSON text messages, each with a `type`.

Client messages may carry a `ref`, echoed on the direct reply (`subscribed`, `pong`,
`error`, ...) so a client can match replies to requests. Task events arrive as the
SSE events do, with `type`, `id` and `task_id` added; a task's own `error` event has
an `id` and a string `code`, a protocol `error` reply has no `id` and an HTTP-like
integer `code`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.common import RequestBody
from schemas.ids import PublicId
from schemas.tasks import ContentPart

TaskId = PublicId
REF_MAX_LENGTH = 128
Ref = Annotated[str | None, Field(max_length=REF_MAX_LENGTH)]


class AuthMessage(RequestBody):
    """First message when the token was not given as `?access_token=`."""

    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=4096)
    ref: Ref = None


class SubscribeMessage(RequestBody):
    """Stream a task's events; `last_event_id` resumes after an event already received."""

    type: Literal["subscribe"]
    task_id: TaskId
    last_event_id: str | None = Field(None, max_length=64)
    ref: Ref = None


class UnsubscribeMessage(RequestBody):
    type: Literal["unsubscribe"]
    task_id: TaskId
    ref: Ref = None


class CancelMessage(RequestBody):
    """Stop generating; the subscription then ends with a `cancelled` event."""

    type: Literal["cancel"]
    task_id: TaskId
    ref: Ref = None


class SendMessage(RequestBody):
    """Ask in a session (text or content parts): starts a task and subscribes to it."""

    type: Literal["send"]
    session_id: PublicId
    content: str | list[ContentPart] = Field(min_length=1)
    ref: Ref = None

    def parts(self) -> list[dict[str, Any]]:
        if isinstance(self.content, str):
            return [{"type": "text", "text": self.content}]
        return [part.model_dump(exclude_none=True) for part in self.content]


class PingMessage(RequestBody):
    type: Literal["ping"]
    ref: Ref = None


class SubscribeFeedMessage(RequestBody):
    """Follow your document status feed (as GET /api/v1/events) on this socket, beside
    any task streams; `last_event_id` resumes after a feed event already received."""

    type: Literal["subscribe_feed"]
    last_event_id: str | None = Field(None, max_length=64)
    ref: Ref = None


class UnsubscribeFeedMessage(RequestBody):
    type: Literal["unsubscribe_feed"]
    ref: Ref = None


ClientMessage = Annotated[
    AuthMessage
    | SubscribeMessage
    | UnsubscribeMessage
    | CancelMessage
    | SendMessage
    | PingMessage
    | SubscribeFeedMessage
    | UnsubscribeFeedMessage,
    Field(discriminator="type"),
]
client_message_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


class ReadyReply(BaseModel):
    """Sent once the connection is authenticated."""

    type: Literal["ready"] = "ready"
    user_id: int
    ref: str | None = None


class SubscribedReply(BaseModel):
    """The subscription holds the task's stream; its events follow."""

    type: Literal["subscribed"] = "subscribed"
    task_id: str
    ref: str | None = None


class UnsubscribedReply(BaseModel):
    type: Literal["unsubscribed"] = "unsubscribed"
    task_id: str
    ref: str | None = None


class CancellingReply(BaseModel):
    """The cancel was recorded; the `cancelled` event ends the task's stream."""

    type: Literal["cancelling"] = "cancelling"
    task_id: str
    status: str
    ref: str | None = None


class PongReply(BaseModel):
    type: Literal["pong"] = "pong"
    ref: str | None = None


class ErrorReply(BaseModel):
    """A request that failed; the socket stays open. Codes follow HTTP (400, 404, 409, 410...)."""

    type: Literal["error"] = "error"
    code: int
    message: str
    task_id: str | None = None
    ref: str | None = None


class TaskEventMessage(BaseModel):
    """A task event (`token`, `reference`, `usage`, `done`, `error`, `cancelled`) with its
    stream id; the remaining fields are those of the SSE event's data."""

    model_config = ConfigDict(extra="allow")

    type: str
    id: str
    task_id: str


class FeedSubscribedReply(BaseModel):
    """The socket follows your document status feed; its events follow."""

    type: Literal["feed_subscribed"] = "feed_subscribed"
    ref: str | None = None


class FeedUnsubscribedReply(BaseModel):
    type: Literal["feed_unsubscribed"] = "feed_unsubscribed"
    ref: str | None = None


class FeedEventMessage(BaseModel):
    """A document status event (`document.progress`, `document.done`, `document.failed`,
    `document.cancelled`) with its feed id; the other fields are those of the SSE
    event's data on GET /api/v1/events. A `feed.reset` (no id) says events after your
    `last_event_id` may be lost: re-read your documents' state."""

    model_config = ConfigDict(extra="allow")

    type: str
    id: str | None = None


ServerMessage = (
    ReadyReply
    | SubscribedReply
    | UnsubscribedReply
    | CancellingReply
    | PongReply
    | ErrorReply
    | TaskEventMessage
    | FeedSubscribedReply
    | FeedUnsubscribedReply
    | FeedEventMessage
)


class WsProtocol(BaseModel):
    """Documentation of the messages exchanged over `/api/v1/ws`."""

    client: ClientMessage
    server: ServerMessage
