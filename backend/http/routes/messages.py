"""Messages of a session: history, record or ask (streaming the answer), delete."""

from __future__ import annotations

from quart import Blueprint, current_app
from quart_schema import (
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)

from backend.http.auth import authenticated, current_user
from backend.http.body_limits import body_limit, media_json
from backend.http.documented_errors import document_errors
from backend.http.openapi import NewTaskEventStream
from backend.http.responses import ok
from backend.http.routes.task_streams import new_task_sse_response
from backend.models import Message
from backend.services import messages, tasks
from schemas.chats import MessageCreate, MessageListQuery, MessageOut, MessagePage
from schemas.envelope import Envelope

blueprint = Blueprint(
    "messages", __name__, url_prefix="/api/v1/chats/<id:chat_id>/sessions/<id:session_id>/messages"
)


def message_out(message: Message) -> MessageOut:
    return MessageOut(
        id=message.id,
        role=message.role,
        content=message.content,
        reference=message.reference,
        visible=message.visible,
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
        task_id=message.task_id,
        created_at=message.created_at,
    )


@blueprint.get("")
@authenticated
@validate_querystring(MessageListQuery)
@validate_response(Envelope[MessagePage])
async def list_messages(chat_id: str, session_id: str, query_args: MessageListQuery):
    """The session's history, oldest first; `include_hidden=true` adds invisible messages."""
    items, total = await messages.list_messages(current_user(), chat_id, session_id, query_args)
    return ok(
        MessagePage(
            items=[message_out(item) for item in items],
            total=total,
            page=query_args.page,
            page_size=query_args.page_size,
        )
    )


@blueprint.post("")
@document_errors(402, 503)
@body_limit(media_json)
@authenticated
@validate_request(MessageCreate)
@validate_response(Envelope[MessageOut], 201)
@document_response(NewTaskEventStream, 200)
async def create_message(chat_id: str, session_id: str, data: MessageCreate):
    """Record a message (201), or with `stream: true` ask and stream the answer as SSE.

    Without `stream`, any role is accepted and `visible: false` injects context the
    model sees but the history view hides. With `stream`, the user's message is
    recorded, a chat task starts, and the response is the task's `text/event-stream`
    (`token`, `usage`, then `done` | `error` | `cancelled`), resumable at
    GET /api/v1/tasks/{task_id}/stream.
    """
    user = current_user()
    if data.stream:
        settings = current_app.config["SETTINGS"]
        # The reader's lease is taken with the answer's job, in one round trip.
        lease = tasks.ReaderLease(settings.stream_lease_seconds)
        task = await messages.ask(
            user,
            chat_id,
            session_id,
            data,
            redis=current_app.config["REDIS"],
            settings=settings,
            reader_lease=lease,
        )
        return await new_task_sse_response(task, lease.token)
    message = await messages.record_message(user, chat_id, session_id, data)
    return ok(message_out(message), 201)


@blueprint.delete("/<id:message_id>")
@authenticated
@validate_response(Envelope[None])
async def delete_message(chat_id: str, session_id: str, message_id: str):
    """Delete one message of the session."""
    await messages.delete_message(current_user(), chat_id, session_id, message_id)
    return ok(None)
