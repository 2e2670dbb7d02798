"""SSE delivery of a task's events, and `sse_response` for the POST routes that stream."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, request
from quart_schema import document_headers, document_response, validate_querystring

from backend.http.auth import authenticated, current_user
from backend.http.openapi import EventStream
from backend.models import User
from backend.streams.delivery import open_task_reader
from backend.streams.hub import hub_for, stop_hub
from backend.streams.sse import SSE_HEADERS, frames
from schemas.streams import StreamHeaders, StreamQuery

blueprint = Blueprint("task_streams", __name__, url_prefix="/api/v1/tasks")


@blueprint.after_app_serving
async def close_hub() -> None:
    await stop_hub(current_app._get_current_object())


async def sse_response(user: User, task_id: str, last_event_id: str | None = None) -> Response:
    """Stream a task's events to `user` as SSE, resuming after `last_event_id`.

    Raises 400/404/409/410 before anything is sent, so those leave as JSON envelopes.
    """
    app = current_app._get_current_object()
    reader = await open_task_reader(
        user,
        task_id,
        last_event_id,
        redis=app.config["REDIS"],
        hub=hub_for(app),
        settings=app.config["SETTINGS"],
    )
    response = Response(frames(reader), mimetype="text/event-stream", headers=SSE_HEADERS)
    # A stream lasts as long as its task, whatever RESPONSE_TIMEOUT says.
    response.timeout = None
    return response


@blueprint.get("/<task_id>/stream")
@authenticated(query_token=True)
@validate_querystring(StreamQuery)
@document_headers(StreamHeaders)
@document_response(EventStream)
async def stream_task(task_id: str, query_args: StreamQuery) -> Response:
    """Stream a task's events as Server-Sent Events (text/event-stream).

    Frames: `token` {delta}, `reference`, `usage`, then one terminal `done` | `error` |
    `cancelled`; each has an `id:`. Resume after a drop with the `Last-Event-ID` header
    (EventSource sends it) or `?last_event_id=`. One reader at a time (409); once the
    terminal event is delivered the stream is consumed (410). `?access_token=` is
    accepted here for clients that cannot set headers.
    """
    last_event_id = request.headers.get("Last-Event-ID") or query_args.last_event_id
    return await sse_response(current_user(), task_id, last_event_id)
