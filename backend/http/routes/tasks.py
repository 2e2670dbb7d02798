"""Chat tasks: start a turn, poll its status, cancel it."""

from __future__ import annotations

import asyncio

from quart import Blueprint, current_app
from quart_schema import document_response, validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.body_limits import body_limit, media_json
from backend.http.documented_errors import document_errors
from backend.http.openapi import NewTaskEventStream
from backend.http.responses import ok
from backend.http.routes.task_streams import new_task_sse_response
from backend.models import Task
from backend.models.tasks import TaskState
from backend.providers.tokens import count_tokens
from backend.services import tasks
from backend.streams.task_stream import TaskStream
from schemas.envelope import Envelope
from schemas.tasks import TaskCreate, TaskError, TaskOut, TaskUsage

blueprint = Blueprint("tasks", __name__, url_prefix="/api/v1/tasks")


@blueprint.before_app_serving
async def warm_tokenizer() -> None:
    """Load the tokenizer at start (about a second), not in the first user's request."""
    await asyncio.to_thread(count_tokens, "warm-up")


def milliseconds(task: Task) -> tuple[float | None, float | None]:
    queued = duration = None
    if task.started_at is not None:
        queued = (task.started_at - task.created_at).total_seconds() * 1000
        if task.finished_at is not None:
            duration = (task.finished_at - task.started_at).total_seconds() * 1000
    return queued, duration


def task_out(task: Task) -> TaskOut:
    queued_ms, duration_ms = milliseconds(task)
    return TaskOut(
        task_id=task.id,
        status=task.state,
        session_id=task.session_id,
        model=task.model,
        user_message_id=task.user_message_id,
        message_id=task.message_id,
        usage=TaskUsage(prompt_tokens=task.prompt_tokens, completion_tokens=task.completion_tokens),
        cost=task.cost,
        error=TaskError(code=task.error_code, message=task.error_message or "")
        if task.error_code
        else None,
        created_at=task.created_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
        queued_ms=queued_ms,
        duration_ms=duration_ms,
    )


@blueprint.post("")
@document_errors(402, 404, 503)
@body_limit(media_json)
@authenticated
@validate_request(TaskCreate)
@validate_response(Envelope[TaskOut], 201)
@document_response(NewTaskEventStream, 200)
async def create_task(data: TaskCreate):
    """Ask a question in a session; with `stream: true` the reply is the SSE stream itself.

    A streamed reply opens with `event: task` `{"task_id": …}` and carries the task id in
    the `X-Task-ID` header (exposed to cross-origin pages).
    """
    settings = current_app.config["SETTINGS"]
    # A streamed answer's reader lease is taken with its job, in one round trip.
    lease = tasks.ReaderLease(settings.stream_lease_seconds) if data.stream else None
    task = await tasks.create_task(
        current_user(),
        data.session_id,
        data.parts(),
        redis=current_app.config["REDIS"],
        settings=settings,
        reader_lease=lease,
    )
    if lease is not None:
        # Fetch-style clients read the id from the opening `task` event or the X-Task-ID
        # header, to cancel or to resume on GET .../stream.
        return await new_task_sse_response(task, lease.token)
    return ok(task_out(task), 201)


@blueprint.get("/<id:task_id>")
@authenticated
@validate_response(Envelope[TaskOut])
async def get_task(task_id: str):
    """Status, timings, usage, cost and the answer's message id, for polling clients;
    `queue_position` while the answer waits behind other users' for the model."""
    task = await tasks.get_task(current_user(), task_id)
    out = task_out(task)
    if task.state is TaskState.RUNNING:
        app = current_app._get_current_object()
        stream = TaskStream.for_task(app.config["REDIS"], app.config["SETTINGS"], task.id)
        out.queue_position = await stream.queue_position()
    return ok(out)


@blueprint.post("/<id:task_id>/cancel")
@document_errors(409)
@authenticated
@validate_response(Envelope[TaskOut])
async def cancel_task(task_id: str):
    """Stop generating: takes effect within a second; only produced tokens are charged."""
    task = await tasks.cancel_task(
        current_user(),
        task_id,
        redis=current_app.config["REDIS"],
        settings=current_app.config["SETTINGS"],
    )
    return ok(task_out(task))
