"""SSE delivery of a task's events, and `new_task_sse_response` for the POST routes that stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from quart import Blueprint, Response, current_app, request
from quart_schema import document_headers, document_response, validate_querystring

from backend.http.auth import authenticated, current_user
from backend.http.credential_guard import guard_stream, sse_error_frame
from backend.http.documented_errors import document_errors
from backend.http.drain import restart_frame
from backend.http.openapi import EventStream
from backend.http.stream_hub import hub_for, stop_hub
from backend.models import Task, User
from backend.streams.delivery import TaskReader, open_new_task_reader, open_task_reader
from backend.streams.sse import SSE_HEADERS, frames
from schemas.streams import StreamHeaders, StreamQuery

blueprint = Blueprint("task_streams", __name__, url_prefix="/api/v1/tasks")


@blueprint.after_app_serving
async def close_hub() -> None:
    await stop_hub(current_app._get_current_object())


def event_stream(
    body: AsyncIterator[bytes] | AsyncIterator[str],
    final_frame: Callable[[str], bytes] = sse_error_frame,
    restart_frame: Callable[[], bytes] | None = None,
) -> Response:
    """A `text/event-stream` response that lasts as long as its task, whatever Quart's
    RESPONSE_TIMEOUT says, and that proxies pass through unbuffered. It ends with
    `final_frame(reason)` as soon as the caller's credential is revoked or expires, and,
    for a stream the client can resume, with `restart_frame()` when the process drains
    (backend/http/drain.py); one that cannot be resumed runs to its end."""
    app = current_app._get_current_object()
    guarded = guard_stream(app, body, final_frame, restart_frame)
    response = Response(guarded, mimetype="text/event-stream", headers=SSE_HEADERS)
    response.timeout = None
    return response


async def new_task_reader(task: Task, lease: str | None = None) -> TaskReader:
    """The reader of a task this request has just created; `lease` if it took the
    stream's lease with the task's job (`services.tasks.ReaderLease`)."""
    app = current_app._get_current_object()
    return await open_new_task_reader(
        task,
        redis=app.config["REDIS"],
        hub=hub_for(app),
        settings=app.config["SETTINGS"],
        lease=lease,
    )


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
    return event_stream(frames(reader), restart_frame=restart_frame)


async def new_task_sse_response(task: Task, lease: str | None = None) -> Response:
    """The SSE stream of a task this request just created (POST with `stream: true`); it
    opens with `event: task` carrying the task id, and the `X-Task-ID` header has it too.
    `lease` as for `new_task_reader`."""
    reader = await new_task_reader(task, lease)
    response = event_stream(frames(reader, announce_task=True), restart_frame=restart_frame)
    response.headers["X-Task-ID"] = task.id
    return response


@blueprint.get("/<id:task_id>/stream")
@document_errors(400, 409, 410)
@authenticated(query_token=True)
@validate_querystring(StreamQuery)
@document_headers(StreamHeaders)
@document_response(EventStream)
async def stream_task(task_id: str, query_args: StreamQuery) -> Response:
    """Stream a task's events as Server-Sent Events (text/event-stream).

    Frames: an opening `retry:`, then `token` {delta}, `reference`, `usage`, then one
    terminal `done` | `error` | `cancelled`; each event has an `id:`. Resume after a drop
    with the `Last-Event-ID` header (EventSource sends it) or `?last_event_id=`. One
    reader at a time (409), but a resume from an id of this stream takes it over at once
    (the old connection may be half-open); once the terminal event is delivered the
    stream is consumed (410). `?access_token=` is accepted for clients that cannot set
    headers.
    """
    last_event_id = request.headers.get("Last-Event-ID") or query_args.last_event_id
    return await sse_response(current_user(), task_id, last_event_id)
