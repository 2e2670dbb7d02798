"""The multiplexed WebSocket `/api/v1/ws`: authentication, then one message at a time."""

from __future__ import annotations

import asyncio

from quart import Blueprint, Response, current_app, websocket
from quart_cors import cors_exempt
from quart_schema import document_response

from backend.dependency_failures import dependency_failure
from backend.errors import ApiError, Unauthorized
from backend.http.browser_origins import browser_origin_allowed
from backend.http.credential_guard import watch_for
from backend.http.drain import CLOSE_SERVICE_RESTART, RESTART_MESSAGE, drain_for
from backend.http.responses import error_response
from backend.http.socket_auth import SocketCredential, refuse
from backend.http.socket_session import SocketSession, parse_message
from backend.http.stream_hub import hub_for
from backend.services.authentication import Credential, authenticate_credential
from backend.settings import Settings
from schemas.envelope import ErrorBody
from schemas.ws import AuthMessage, ErrorReply, ReadyReply, WsProtocol

blueprint = Blueprint("ws", __name__)

PATH = "/api/v1/ws"
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


async def authenticate_socket(settings: Settings) -> tuple[Credential, str | None] | None:
    """The connection's credential; on failure an `error` reply, then close code 4401."""
    try:
        token, ref = await socket_credential(settings)
        redis = current_app.config["REDIS"]
        return await authenticate_credential(token, settings, redis), ref
    except Unauthorized as error:
        await refuse(error.message)
        return None


async def serve(raw: str | bytes, session: SocketSession, credential: SocketCredential) -> bool:
    """Answer one message with the credential's current state; False once it has ended.

    `{"type":"auth"}` on an open socket swaps in a new token of the same user (a
    refreshed access token), so a socket outlives its first token's expiry.
    """
    try:
        current = await credential.current()
    except Exception as error:
        failure = dependency_failure(error)
        if failure is None:
            raise
        # Redis or SQL away: the credential cannot be checked now; the socket stays open.
        await session.reply(ErrorReply(code=failure.status, message=failure.message))
        return True
    if current is None:
        return False
    session.user = current.user
    try:
        message = parse_message(raw)
    except ApiError:
        message = None  # `handle` replies with what is wrong with it
    if not isinstance(message, AuthMessage):
        await session.handle(raw)
        return True
    try:
        fresh = await credential.replace(message.token)
    except Unauthorized as error:
        await session.reply(ErrorReply(code=401, message=error.message, ref=message.ref))
        return True
    except ValueError as error:
        await session.reply(ErrorReply(code=403, message=str(error), ref=message.ref))
        return True
    session.user = fresh.user
    await session.reply(ReadyReply(user_id=fresh.user.id, ref=message.ref))
    return True


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
    watch = watch_for(app)
    mark = watch.mark()
    authenticated = await authenticate_socket(settings)
    if authenticated is None:
        return
    first, ref = authenticated
    credential = SocketCredential(first, watch, app.config["REDIS"], settings)
    session = SocketSession(
        first.user, websocket.send, redis=app.config["REDIS"], hub=hub_for(app), settings=settings
    )
    drain = drain_for(app)
    try:
        await credential.start(mark)
        drain.register(credential.restart)
        await session.reply(ReadyReply(user_id=first.user.id, ref=ref))
        while True:
            raw = await credential.guard.wait_for(websocket.receive())
            if raw is None or not await serve(raw, session, credential):
                break
    finally:
        drain.unregister(credential.restart)
        credential.stop()
        await session.close()
    if credential.restarting:
        # Subscriptions gave their leases up: the client resumes them on another replica.
        await websocket.close(CLOSE_SERVICE_RESTART, RESTART_MESSAGE)
        return
    # The credential was revoked, disabled, logged out or expired.
    await refuse(credential.ended or "Credentials no longer valid")


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
    Every message is authorized with the credential's current state: once it is revoked,
    logged out or expired, or the account disabled, the socket gets `error` 401 and close
    code 4401 (within moments, even when idle). `auth {token}` with a fresh token of the
    same user (answered `ready`) keeps the socket open past the first token's expiry.
    """
    response = error_response(426, f"Upgrade required: open a WebSocket to {PATH}")
    response.headers["Upgrade"] = "websocket"
    return response
