"""OpenAI's chat completions, for the official SDKs and every tool built on them.

`POST /v1/chat/completions` (`model` = a chat assistant's id or a model name) and
RAGFlow's chat-scoped paths `POST /api/v1/openai/{chat_id}/chat/completions` and
`/api/v1/chats_openai/{chat_id}/chat/completions` (its older name). With `stream`, a
text/event-stream of `data: <chat.completion.chunk>` frames: the role first, one per
token, then a last chunk with `finish_reason` (`"length"` when `max_tokens` cut the
answer), `usage` and, for an answer over knowledge bases, `delta.reference` (the cited
chunks, RAGFlow's field), then `data: [DONE]`. With `stream_options.include_usage`, as
OpenAI sends it: `usage` comes instead in one more chunk after that, whose `choices` is
empty. Without `stream`, one `chat.completion` whose `message.reference` carries them.

Errors: before the stream starts, Sluice's envelope `{"code","message"}` with OpenAI's
`error` object added (`{"message","type","param","code"}`), which is what the SDK reads
into its exceptions; after it started, a `data: {"error": {...}}` frame (the SDK raises
`APIError` on it), then `data: [DONE]`. A client that disconnects cancels the answer: no
one could read the rest, so it is not generated or charged.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from quart import Blueprint, Response, current_app, request
from quart_schema import document_response, validate_request

from backend.http.auth import authenticated, current_user
from backend.http.body_limits import body_limit, media_json
from backend.http.credential_guard import openai_error_frame
from backend.http.documented_errors import document_errors
from backend.http.openapi import JSON, RawBody
from backend.http.routes.task_streams import event_stream, new_task_reader
from backend.services import completions, converse, openai_chat, tasks
from backend.services.completions import Progress
from schemas.openai_chat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    ChunkDelta,
    CompletionUsage,
    OpenAIErrorDetail,
    StreamError,
)

blueprint = Blueprint("openai_chat", __name__)

ERROR_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
DONE = b"data: [DONE]\n\n"


def error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return ERROR_TYPES.get(status, "invalid_request_error")


def is_openai_path(path: str) -> bool:
    return path == "/v1/chat/completions" or (
        path.startswith(("/api/v1/openai/", "/api/v1/chats_openai/"))
        and path.endswith("/chat/completions")
    )


@blueprint.after_app_request
async def openai_error_object(response: Response) -> Response:
    """Add OpenAI's `error` object to the envelope of every failure on these paths, also
    those answered before routing (a malformed chat id's 404)."""
    if response.status_code < 400 or response.mimetype != JSON:
        return response
    if not is_openai_path(request.path):
        return response
    body = await response.get_json()
    if isinstance(body, dict) and "message" in body and "error" not in body:
        detail = OpenAIErrorDetail(
            message=body["message"], type=error_type(response.status_code), code=str(body["code"])
        )
        response.set_data(json.dumps({**body, "error": detail.model_dump()}))
    return response


class CompletionIdentity:
    """What every chunk of one answer repeats: id, creation time and model."""

    def __init__(self, task_id: str, model: str) -> None:
        self.id = f"chatcmpl-{task_id}"
        self.created = int(time.time())
        self.model = model

    def chunk(self, delta: ChunkDelta, **fields: Any) -> bytes:
        choice = ChunkChoice(delta=delta, finish_reason=fields.pop("finish_reason", None))
        chunk = ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=[choice], **fields
        )
        return frame(chunk.model_dump(mode="json", exclude_none=True))

    def usage_chunk(self, usage: CompletionUsage) -> bytes:
        """OpenAI's closing chunk with `include_usage`: no choices, only the usage."""
        chunk = ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=[], usage=usage
        )
        return frame(chunk.model_dump(mode="json", exclude_none=True))


def frame(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def usage_of(step: Progress) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=step.prompt_tokens,
        completion_tokens=step.completion_tokens,
        total_tokens=step.prompt_tokens + step.completion_tokens,
    )


def cited_chunks(step: Progress, wanted: bool) -> list[dict[str, Any]] | None:
    """RAGFlow's OpenAI-compatible reference: the chunks, when there are any to give."""
    chunks = step.reference.get("chunks") if wanted else None
    return chunks or None


async def chunk_stream(
    steps: AsyncIterator[Progress],
    identity: CompletionIdentity,
    wants_reference: bool,
    on_abandon: Callable[[], Awaitable[None]],
    usage_apart: bool = False,
) -> AsyncIterator[bytes]:
    finished = False
    try:
        yield identity.chunk(ChunkDelta(role="assistant", content=""))
        async for step in steps:
            if step.error is not None:
                finished = True
                error = OpenAIErrorDetail(message=step.error, type="server_error")
                yield frame(StreamError(error=error).model_dump())
            elif step.done:
                finished = True
                delta = ChunkDelta(reference=cited_chunks(step, wants_reference))
                reason = str(step.finish_reason)
                if usage_apart:
                    yield identity.chunk(delta, finish_reason=reason)
                    yield identity.usage_chunk(usage_of(step))
                else:
                    yield identity.chunk(delta, finish_reason=reason, usage=usage_of(step))
            elif step.delta:
                yield identity.chunk(ChunkDelta(content=step.delta))
        yield DONE
    finally:
        if not finished:
            await asyncio.shield(on_abandon())


class ChunkStream(RawBody):
    """With `stream: true`: text/event-stream `data:` frames, each a chat.completion.chunk
    (the last with `finish_reason`, `usage` and, over knowledge bases, `delta.reference`;
    with `stream_options.include_usage` the usage follows in a chunk with empty
    `choices`) or, for a failure after the start, `{"error": {...}}`; then
    `data: [DONE]`. Without it, one chat.completion."""

    media_type = "text/event-stream"
    schema = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"const": "message"},
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {
                        "type": "string",
                        "contentMediaType": JSON,
                        "contentSchema": {
                            "anyOf": [
                                ChatCompletionChunk.model_json_schema(),
                                StreamError.model_json_schema(),
                            ]
                        },
                    },
                ]
            },
        },
    }
    json_alternative = ChatCompletion


async def complete(data: ChatCompletionRequest, chat_id: str | None) -> Response | ChatCompletion:
    app = current_app._get_current_object()
    user = current_user()
    redis, settings = app.config["REDIS"], app.config["SETTINGS"]
    # Every answer is read here: its reader's lease is taken with its job.
    lease = tasks.ReaderLease(settings.stream_lease_seconds)
    task, target = await openai_chat.start(
        user, data, chat_id, redis=redis, settings=settings, reader_lease=lease
    )
    reader = await new_task_reader(task, lease.token)
    identity = CompletionIdentity(task.id, target.model_name)
    abandon = partial(converse.abandon, user, task.id, redis=redis, settings=settings)
    if data.stream:
        steps = completions.progress(reader)
        usage_apart = bool(data.stream_options and data.stream_options.include_usage)
        body = chunk_stream(steps, identity, data.wants_reference(), abandon, usage_apart)
        response = event_stream(body, openai_error_frame)
        response.headers["X-Task-ID"] = task.id
        return response
    try:
        final = await completions.final_answer(reader)
    except asyncio.CancelledError:
        await asyncio.shield(abandon())
        raise
    message = AssistantMessage(
        content=final.answer, reference=cited_chunks(final, data.wants_reference())
    )
    return ChatCompletion(
        id=identity.id,
        created=identity.created,
        model=identity.model,
        choices=[Choice(message=message, finish_reason=str(final.finish_reason))],
        usage=usage_of(final),
    )


def answer(completion: Response | ChatCompletion) -> Response | tuple[dict[str, Any], int]:
    if isinstance(completion, ChatCompletion):
        return completion.model_dump(mode="json", exclude_none=True), 200
    return completion


@blueprint.post("/v1/chat/completions")
@document_errors(402, 404, 502, 503)
@body_limit(media_json)
@authenticated
@validate_request(ChatCompletionRequest)
@document_response(ChunkStream)
async def chat_completions(data: ChatCompletionRequest):
    """OpenAI-compatible chat completion; `model` is a chat assistant's id (its prompt,
    settings and knowledge) or a model name. The conversation is sent whole and not
    stored. Errors carry OpenAI's `error` object beside the envelope."""
    return answer(await complete(data, None))


@blueprint.post("/api/v1/openai/<id:chat_id>/chat/completions")
@document_errors(402, 502, 503)
@body_limit(media_json)
@authenticated
@validate_request(ChatCompletionRequest)
@document_response(ChunkStream)
async def chat_scoped_completions(chat_id: str, data: ChatCompletionRequest):
    """RAGFlow's OpenAI-compatible completion with a chat assistant: its prompt, settings
    and knowledge; `model` may name another model of the registry (else the assistant's
    is used, e.g. with RAGFlow's placeholder "model"). The conversation is not stored."""
    return answer(await complete(data, chat_id))


@blueprint.post("/api/v1/chats_openai/<id:chat_id>/chat/completions")
@document_errors(402, 502, 503)
@body_limit(media_json)
@authenticated
@validate_request(ChatCompletionRequest)
@document_response(ChunkStream)
async def chats_openai_completions(chat_id: str, data: ChatCompletionRequest):
    """RAGFlow's older path of POST /api/v1/openai/{chat_id}/chat/completions, the same."""
    return answer(await complete(data, chat_id))
