"""Sessions of an assistant: one user's conversation, private to that user.

A session starts with the assistant's opener as an assistant message, as in RAGFlow.
Another user's session is reported missing (404), never forbidden.
"""

from __future__ import annotations

from tortoise.transactions import in_transaction

from backend.errors import NotFound
from backend.models import ChatSession, Message, User
from backend.models.chats import Role
from backend.models.listing import ragflow_page
from backend.services.assistants import get_visible_assistant
from schemas.chats import ListQuery


async def create_session(user: User, assistant_id: str, name: str) -> ChatSession:
    assistant = await get_visible_assistant(user, assistant_id)
    opener = (assistant.prompt or {}).get("opener") or ""
    async with in_transaction():
        session = await ChatSession.create(assistant_id=assistant.id, user_id=user.id, name=name)
        if opener:
            await Message.create(
                session_id=session.id,
                role=Role.ASSISTANT,
                content=[{"type": "text", "text": opener}],
            )
    return session


async def get_session(user: User, assistant_id: str, session_id: str) -> ChatSession:
    """The user's own session of an assistant they can still see."""
    await get_visible_assistant(user, assistant_id)
    session = await ChatSession.get_or_none(
        id=session_id, assistant_id=assistant_id, user_id=user.id
    )
    if session is None:
        raise NotFound(f"Session '{session_id}' not found in chat '{assistant_id}'")
    return session


async def list_sessions(user: User, assistant_id: str, query: ListQuery) -> list[ChatSession]:
    await get_visible_assistant(user, assistant_id)
    sessions = ChatSession.filter(assistant_id=assistant_id, user_id=user.id)
    return await ragflow_page(sessions, query, "session")


async def rename_session(user: User, assistant_id: str, session_id: str, name: str) -> ChatSession:
    session = await get_session(user, assistant_id, session_id)
    session.name = name
    await session.save()
    return session


async def delete_sessions(user: User, assistant_id: str, ids: list[str]) -> None:
    """All or nothing: every id must be one of the user's sessions of this assistant."""
    await get_visible_assistant(user, assistant_id)
    unique = set(ids)
    found = await ChatSession.filter(
        id__in=unique, assistant_id=assistant_id, user_id=user.id
    ).values_list("id", flat=True)
    missing = sorted(unique - set(found))
    if missing:
        raise NotFound(f"Session(s) not found in chat '{assistant_id}': {', '.join(missing)}")
    await ChatSession.filter(id__in=unique).delete()


async def visible_messages(session_ids: list[str]) -> dict[str, list[Message]]:
    """The visible messages of several sessions, oldest first, in one query."""
    grouped: dict[str, list[Message]] = {session_id: [] for session_id in session_ids}
    messages = await Message.filter(session_id__in=session_ids, visible=True).order_by(
        "created_at", "id"
    )
    for message in messages:
        grouped[message.session_id].append(message)
    return grouped
