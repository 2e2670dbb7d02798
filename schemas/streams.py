"""Parameters of the SSE task stream route."""

from pydantic import BaseModel, Field


class StreamQuery(BaseModel):
    last_event_id: str | None = Field(
        None, description="Resume after this event id (same as the Last-Event-ID header)."
    )
    access_token: str | None = Field(
        None, description="Bearer token for clients that cannot set headers (EventSource)."
    )


class StreamHeaders(BaseModel):
    last_event_id: str | None = Field(
        None, description="Sent by EventSource on reconnect: the `id` of the last event received."
    )
