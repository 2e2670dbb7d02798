"""Sessions at RAGFlow's `/api/v1/chats/{chat_id}/sessions`, private to their user."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.responses import ok
from backend.http.routes.chats import milliseconds
from backend.http.routes.messages import message_out
from backend.models import ChatSession, Message
from backend.services import chat_sessions
from schemas.chats import DeleteIds, ListQuery, SessionCreate, SessionOut, SessionUpdate
from schemas.envelope import Envelope

blueprint = Blueprint("chat_sessions", __name__, url_prefix="/api/v1/chats/<id:chat_id>/sessions")


def session_out(session: ChatSession, messages: list[Message]) -> SessionOut:
    return SessionOut(
        id=session.id,
        chat_id=session.assistant_id,
        name=session.name,
        messages=[message_out(message) for message in messages],
        create_time=milliseconds(session.created_at),
        update_time=milliseconds(session.updated_at),
    )


async def sessions_out(sessions: list[ChatSession]) -> list[SessionOut]:
    grouped = await chat_sessions.visible_messages([session.id for session in sessions])
    return [session_out(session, grouped[session.id]) for session in sessions]


@blueprint.post("")
@authenticated
@validate_request(SessionCreate)
@validate_response(Envelope[SessionOut], 201)
async def create_session(chat_id: str, data: SessionCreate):
    """Start a session; it opens with the assistant's `prompt.opener` as an assistant message."""
    session = await chat_sessions.create_session(current_user(), chat_id, data.name)
    return ok((await sessions_out([session]))[0], 201)


@blueprint.get("")
@authenticated
@validate_querystring(ListQuery)
@validate_response(Envelope[list[SessionOut]])
async def list_sessions(chat_id: str, query_args: ListQuery):
    """The caller's sessions of this assistant, each with its visible messages."""
    sessions = await chat_sessions.list_sessions(current_user(), chat_id, query_args)
    return ok(await sessions_out(sessions))


@blueprint.put("/<id:session_id>")
@authenticated
@validate_request(SessionUpdate)
@validate_response(Envelope[SessionOut])
async def update_session(chat_id: str, session_id: str, data: SessionUpdate):
    """Rename a session."""
    session = await chat_sessions.rename_session(current_user(), chat_id, session_id, data.name)
    return ok((await sessions_out([session]))[0])


@blueprint.delete("")
@authenticated
@validate_request(DeleteIds)
@validate_response(Envelope[None])
async def delete_sessions(chat_id: str, data: DeleteIds):
    """Delete sessions by `ids` with their messages; all or nothing."""
    await chat_sessions.delete_sessions(current_user(), chat_id, data.ids)
    return ok(None)
