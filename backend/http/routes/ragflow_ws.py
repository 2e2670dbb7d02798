"""RAGFlow's WebSocket chat protocol at `/v1/ws/chat`, for clients written for RAGFlow
(WeChat mini-programs among them), served over the same chat tasks and streams.

Authenticate with `Authorization: Bearer <token>` (or the bare token) or `?token=`; a
missing or bad token closes the socket with 1008. Each message `{"type":"chat","chat_id",
"question","session_id"?}` asks the assistant (a new session when none is given) and is
answered with RAGFlow's frames `{"code":0,"message":"","data":{"answer","reference","id",
"session_id","chat_id"}}`, one per token with the new text (the clients of RAGFlow's
documentation append `answer`), a frame with an empty answer when the task stream
carries a reference (before the first token; again with the final reference), then
`{"code":0,"message":"","data":true}`. A refused or failed question gets `{"code":<status>,
"message":...,"data":{"answer":"**ERROR**: ...","reference":[]}}` and the connection
carries on. Questions on one socket are answered one after the other. An answer whose
client leaves is still generated and stored in its session, as over HTTP.

Each question is authorized with the token's current state; a token that is revoked,
logged out or expires, or whose account is disabled, closes the socket at once, even
mid-answer, with an error frame (code 401) and close code 4401.
"""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any, Literal

from pydantic import Field, StrictBool, ValidationError
from quart import Blueprint, Response, current_app, websocket
from quart_cors import cors_exempt

from backend.errors import ApiError
from backend.http.browser_origins import browser_origin_allowed
from backend.http.credential_guard import CLOSE_UNAUTHORIZED, watch_for
from backend.http.drain import CLOSE_SERVICE_RESTART, RESTART_MESSAGE, drain_for
from backend.http.error_handlers import describe_validation_error
from backend.http.json_bodies import decode_json
from backend.http.responses import error_response
from backend.http.socket_auth import MAX_CLOSE_REASON, SocketCredential
from backend.http.stream_hub import hub_for
from backend.models import User
from backend.services import completions, tasks
from backend.services.authentication import Credential, authenticate_credential
from backend.settings import Settings
from backend.streams.delivery import open_new_task_reader
from schemas.chats import CompletionRequest
from schemas.common import RequestBody
from schemas.ids import PublicId

blueprint = Blueprint("ragflow_ws", __name__)

PATH = "/v1/ws/chat"
CLOSE_POLICY_VIOLATION = 1008


class ChatMessage(RequestBody):
    type: Literal["chat"]
    chat_id: PublicId
    question: str = Field(min_length=1)
    session_id: PublicId | None = None
    stream: StrictBool = True


def frame(code: int, message: str, data: Any) -> str:
    return json.dumps({"code": code, "message": message, "data": data}, ensure_ascii=False)


def error_frame(status: int, message: str) -> str:
    return frame(status, message, {"answer": f"**ERROR**: {message}", "reference": []})


def socket_token() -> str:
    scheme, _, rest = websocket.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    return scheme or websocket.args.get("token", "")


async def socket_credential(settings: Settings) -> Credential | None:
    token = socket_token()
    if not token:
        return None
    try:
        return await authenticate_credential(token, settings, current_app.config["REDIS"])
    except ApiError:
        return None


def parse(raw: str | bytes) -> ChatMessage:
    try:
        return ChatMessage.model_validate(decode_json(raw))
    except ValidationError as error:
        raise ApiError(describe_validation_error(error), status=422) from error


async def answer(user: User, message: ChatMessage) -> None:
    """Ask, then relay the task's events as RAGFlow's frames."""
    app = current_app._get_current_object()
    redis, settings = app.config["REDIS"], app.config["SETTINGS"]
    request = CompletionRequest(question=message.question, session_id=message.session_id)
    # Its reader's lease is taken with its job.
    lease = tasks.ReaderLease(settings.stream_lease_seconds)
    session, task = await completions.ask(
        user, message.chat_id, request, redis=redis, settings=settings, reader_lease=lease
    )
    reader = await open_new_task_reader(
        task, redis=redis, hub=hub_for(app), settings=settings, lease=lease.token
    )
    ids = {"id": task.id, "session_id": session.id, "chat_id": message.chat_id}
    sent: dict[str, Any] = {}
    async with aclosing(completions.progress(reader)) as steps:
        async for step in steps:
            if step.error is not None:
                await websocket.send(error_frame(500, step.error))
            elif step.delta or step.reference != sent:
                sent = step.reference
                data = {"answer": step.delta, "reference": step.reference, **ids}
                await websocket.send(frame(0, "", data))
    await websocket.send(frame(0, "", True))


@blueprint.websocket(PATH)
@cors_exempt  # apps and mini-programs send no Origin; browsers are checked below
async def ragflow_chat() -> Response | None:
    settings: Settings = current_app.config["SETTINGS"]
    origin = websocket.headers.get("Origin")
    if not browser_origin_allowed(origin, websocket.headers.get("Host"), settings.cors_origins):
        return error_response(
            403, f"Origin '{origin[:100]}' may not open this WebSocket: add it to CORS_ORIGINS"
        )
    await websocket.accept()
    watch = watch_for(current_app)
    mark = watch.mark()
    first = await socket_credential(settings)
    if first is None:
        await websocket.close(CLOSE_POLICY_VIOLATION, "Authentication failed: pass a valid token")
        return None
    credential = SocketCredential(first, watch, current_app.config["REDIS"], settings)
    drain = drain_for(current_app)
    try:
        await credential.start(mark)
        drain.register(credential.restart)
        # Waiting and answering alike are interrupted when the credential ends, or when
        # the process drains (the answer carries on in its task; the client may resume it).
        await credential.guard.wait_for(questions(credential))
    finally:
        drain.unregister(credential.restart)
        credential.stop()
    if credential.restarting:
        await websocket.close(CLOSE_SERVICE_RESTART, RESTART_MESSAGE)
        return None
    reason = credential.ended or "Credentials no longer valid"
    await websocket.send(error_frame(401, reason))
    await websocket.close(CLOSE_UNAUTHORIZED, reason[:MAX_CLOSE_REASON])
    return None


async def questions(credential: SocketCredential) -> None:
    """Answer questions one after the other while the credential holds."""
    while True:
        raw = await websocket.receive()
        current = await credential.current()
        if current is None:
            return
        try:
            await answer(current.user, parse(raw))
        except ApiError as error:
            await websocket.send(error_frame(error.status, error.message))
