"""The multiplexed WebSocket `/api/v1/ws`: authentication, then one message at a time."""

from __future__ import annotations

import asyncio

from quart import Blueprint, Response, current_app, websocket
from quart_cors import cors_exempt
from quart_schema import document_response

from backend.errors import ApiError, Unauthorized
from backend.http.browser_origins import browser_origin_allowed
from backend.http.responses import error_response
from backend.http.socket_session import SocketSession, parse_message
from backend.http.stream_hub import hub_for
from backend.models import User
from backend.services.authentication import authenticate
from backend.settings import Settings
from schemas.envelope import ErrorBody
from schemas.ws import AuthMessage, ErrorReply, ReadyReply, WsProtocol

blueprint = Blueprint("ws", __name__)

PATH = "/api/v1/ws"
CLOSE_UNAUTHORIZED = 4401
MAX_CLOSE_REASON = 120
AUTH_HINT = 'connect with ?access_token=<token> or send {"type":"auth","token":"<token>"} first'


async def socket_credential(settings: Settings) -> tuple[str, str | None]:
    """The token from the query, the Authorization header, or the first message (and its ref)."""
    scheme, _, header_token = websocket.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and header_token.strip():
        return header_token.strip(), None
    if websocket.args.get("access_token"):
        return websocket.args["access_token"], None
    try:
        async with asyncio.timeout(settings.ws_auth_timeout_seconds):
            raw = await websocket.receive()
    except TimeoutError as error:
        raise Unauthorized(f"Authentication timed out: {AUTH_HINT}") from error
    try:
        message = parse_message(raw)
    except ApiError as error:
        raise Unauthorized(f"Not authenticated: {AUTH_HINT}") from error
    if not isinstance(message, AuthMessage):
        raise Unauthorized(f"Not authenticated: {AUTH_HINT}")
    return message.token, message.ref


async def authenticate_socket(settings: Settings) -> tuple[User, str | None] | None:
    """The connection's user; on failure an `error` reply, then close code 4401."""
    try:
        token, ref = await socket_credential(settings)
        return await authenticate(token, settings), ref
    except Unauthorized as error:
        await websocket.send(ErrorReply(code=401, message=error.message).model_dump_json())
        await websocket.close(CLOSE_UNAUTHORIZED, error.message[:MAX_CLOSE_REASON])
        return None


@blueprint.websocket(PATH)
@cors_exempt  # quart-cors would refuse every client without an Origin (apps, mini-programs)
async def socket() -> Response | None:
    app = current_app._get_current_object()
    settings: Settings = app.config["SETTINGS"]
    origin = websocket.headers.get("Origin")
    if not browser_origin_allowed(origin, websocket.headers.get("Host"), settings.cors_origins):
        return error_response(
            403, f"Origin '{origin[:100]}' may not open this WebSocket: add it to CORS_ORIGINS"
        )
    await websocket.accept()
    authenticated = await authenticate_socket(settings)
    if authenticated is None:
        return
    user, ref = authenticated
    session = SocketSession(
        user, websocket.send, redis=app.config["REDIS"], hub=hub_for(app), settings=settings
    )
    try:
        await session.reply(ReadyReply(user_id=user.id, ref=ref))
        while True:
            await session.handle(await websocket.receive())
    finally:
        await session.close()


@blueprint.get(PATH)
@document_response(WsProtocol, 101)
@document_response(ErrorBody, 426)
async def socket_over_http():
    """WebSocket: stream several tasks' events over one connection (upgrade required).

    Authenticate with `?access_token=`, an `Authorization: Bearer` header, or a first
    message `{"type":"auth","token":...}` within a few seconds (else close code 4401).
    Then send JSON messages: `subscribe {task_id, last_event_id?}`, `unsubscribe
    {task_id}`, `cancel {task_id}`, `send {session_id, content}` (starts a task and
    subscribes to it), `ping`. The server sends `ready`, `subscribed`, `unsubscribed`,
    `cancelling`, `pong`, `error {code, message, task_id?}` and the task events of SSE
    with `type`, `id` and `task_id`. Delivery rules are those of the SSE stream: one
    reader per task (409), consumed once (410), another user's task is 404. Your
    document status feed (as GET /api/v1/events) shares the socket: `subscribe_feed
    {last_event_id?}` -> `feed_subscribed`, then `document.progress|done|failed|
    cancelled` events with `type` and `id`; `unsubscribe_feed` -> `feed_unsubscribed`.
    """
    response = error_response(426, f"Upgrade required: open a WebSocket to {PATH}")
    response.headers["Upgrade"] = "websocket"
    return response
