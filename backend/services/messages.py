"""Messages of a session: history, recording a message, asking for an answer.

Recording without streaming is for clients that keep the conversation themselves or
inject context: any role, visible or not (invisible messages reach the model but not
the user's history view). Asking records the user's message and starts a chat task.
"""

from __future__ import annotations

from arq.connections import ArqRedis

from backend.errors import BadRequest, NotFound
from backend.models import Message, Task, User
from backend.services import tasks
from backend.services.chat_sessions import get_session
from backend.services.upload_access import authorize_parts
from backend.settings import Settings
from schemas.chats import MessageCreate, MessageListQuery, MessageRole


async def list_messages(
    user: User, assistant_id: str, session_id: str, query: MessageListQuery
) -> tuple[list[Message], int]:
    """A page of the history, oldest first; hidden messages only when asked for."""
    session = await get_session(user, assistant_id, session_id)
    filters = Message.filter(session_id=session.id)
    if not query.include_hidden:
        filters = filters.filter(visible=True)
    total = await filters.count()
    items = await filters.order_by("created_at", "id").offset(query.offset).limit(query.page_size)
    return items, total


async def record_message(
    user: User, assistant_id: str, session_id: str, data: MessageCreate
) -> Message:
    session = await get_session(user, assistant_id, session_id)
    parts = await authorize_parts(user, data.parts())
    message = await Message.create(
        session_id=session.id, role=data.role, content=parts, visible=data.visible
    )
    await session.save(update_fields=["updated_at"])
    return message


async def ask(
    user: User,
    assistant_id: str,
    session_id: str,
    data: MessageCreate,
    *,
    redis: ArqRedis,
    settings: Settings,
    reader_lease: tasks.ReaderLease | None = None,
) -> Task:
    """Record the user's question and start the answer on the chat worker (taking
    `reader_lease` with its job, for a request that streams it)."""
    if data.role is not MessageRole.USER or not data.visible:
        raise BadRequest(
            "Only a visible user message starts an answer: drop 'role'/'visible', "
            "or send without 'stream' to record it"
        )
    session = await get_session(user, assistant_id, session_id)
    task = await tasks.create_task(
        user, session.id, data.parts(), redis=redis, settings=settings, reader_lease=reader_lease
    )
    await session.save(update_fields=["updated_at"])
    return task


async def delete_message(user: User, assistant_id: str, session_id: str, message_id: str) -> None:
    session = await get_session(user, assistant_id, session_id)
    deleted = await Message.filter(id=message_id, session_id=session.id).delete()
    if not deleted:
        raise NotFound(f"Message '{message_id}' not found in session '{session_id}'")
