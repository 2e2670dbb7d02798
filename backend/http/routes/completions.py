"""RAGFlow's `POST /api/v1/chats/{chat_id}/completions`, for existing RAGFlow clients.

Streaming answers are RAGFlow's SSE lines: `data:{"code":0,"message":"","data":{"answer":
<text so far>,"reference":{...},"audio_binary":null,"id":<task id>,"session_id":...,
"chat_id":...}}`, then `data:{"code":0,"message":"","data":true}`. `reference` is `{}` until
the task stream carries one (an assistant over datasets sends it before the first token,
as a line with an empty answer); the final reference, which comes with the terminal event,
goes out on one last line with the whole answer. A failure is a line with code 500 and
`"answer": "**ERROR**: <reason>"`. The answer is stored in the session like any other.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, current_app
from quart_schema import document_response, validate_request

from backend.http.auth import authenticated, current_user
from backend.http.documented_errors import document_errors
from backend.http.openapi import RawBody, sse_frame_schema
from backend.http.responses import ok
from backend.http.routes.task_streams import event_stream, new_task_reader
from backend.services import completions, tasks
from schemas.chats import CompletionAnswer, CompletionRequest
from schemas.envelope import Envelope

blueprint = Blueprint("completions", __name__, url_prefix="/api/v1/chats/<id:chat_id>/completions")


# One `data:` line of the stream: the answer so far (code 0), a failure (code 500 and
# "**ERROR**: ..." as the answer), or the end (`"data": true`).
RAGFLOW_LINE = {
    "type": "object",
    "required": ["code", "message", "data"],
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "data": {
            "oneOf": [
                {"const": True},
                {
                    "type": "object",
                    "required": ["answer", "reference"],
                    "properties": {
                        "answer": {"type": "string"},
                        "reference": {"type": ["object", "array"]},
                        "audio_binary": {"type": "null"},
                        "id": {"type": "string"},
                        "session_id": {"type": "string"},
                        "chat_id": {"type": "string"},
                    },
                },
            ]
        },
    },
}


class CompletionReply(RawBody):
    """With `stream` (the default): RAGFlow's text/event-stream of `data:` lines, the
    answer so far in each, ending with `"data": true`. With `stream: false`: the whole
    answer as JSON once generated."""

    media_type = "text/event-stream"
    schema = sse_frame_schema({"message": RAGFLOW_LINE}, with_id=False)
    json_alternative = Envelope[CompletionAnswer]


def data_line(payload: dict[str, Any]) -> bytes:
    return f"data:{json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def answer_line(answer: str, reference: dict[str, Any], ids: dict[str, str]) -> bytes:
    data = {"answer": answer, "reference": reference, "audio_binary": None, **ids}
    return data_line({"code": 0, "message": "", "data": data})


def error_line(error: str) -> bytes:
    error = f"**ERROR**: {error}"
    return data_line({"code": 500, "message": error, "data": {"answer": error, "reference": []}})


async def ragflow_lines(
    steps: AsyncIterator[completions.Progress], ids: dict[str, str]
) -> AsyncIterator[bytes]:
    """RAGFlow's lines for the steps of an answer; `ids` are `id`, `session_id`, `chat_id`."""
    sent: dict[str, Any] = {}
    shown = ""
    async for step in steps:
        if step.error is not None:
            yield error_line(step.error)
        elif not step.done:
            sent, shown = step.reference, step.answer
            yield answer_line(step.answer, step.reference, ids)
        elif step.reference != sent or step.answer != shown:
            # The final reference, or the answer with citations inserted after generation.
            yield answer_line(step.answer, step.reference, ids)
    yield data_line({"code": 0, "message": "", "data": True})


@blueprint.post("")
@document_errors(402, 502, 503)
@authenticated
@validate_request(CompletionRequest)
@document_response(CompletionReply)
async def create_completion(chat_id: str, data: CompletionRequest):
    """Ask the assistant (RAGFlow-compatible); `stream` defaults to true.

    Without `session_id` a new session is started. Streaming replies are SSE `data:`
    lines with the answer so far, ending with `"data": true`; without `stream` the reply
    is the whole answer once generated.
    """
    app = current_app._get_current_object()
    user = current_user()
    settings = app.config["SETTINGS"]
    # Every answer is read here: its reader's lease is taken with its job.
    lease = tasks.ReaderLease(settings.stream_lease_seconds)
    session, task = await completions.ask(
        user, chat_id, data, redis=app.config["REDIS"], settings=settings, reader_lease=lease
    )
    reader = await new_task_reader(task, lease.token)
    if data.stream:
        ids = {"id": task.id, "session_id": session.id, "chat_id": chat_id}
        return event_stream(ragflow_lines(completions.progress(reader), ids))
    final = await completions.final_answer(reader)
    answer = CompletionAnswer(
        answer=final.answer,
        reference=final.reference,
        id=final.message_id,
        session_id=session.id,
        chat_id=chat_id,
    )
    return ok(answer)
