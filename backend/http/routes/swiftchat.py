"""SwiftChat's backend API at `/api/...`: converse, models, image, upgrade.

`POST /api/converse` answers with a raw text body, as SwiftChat's app reads it: the
answer's text deltas as they are generated, then one final line (after a `\\n`) with the
token usage as Bedrock's JSON `{"inputTokens": n, "outputTokens": n, "totalTokens": n}`.
A failure after the stream started ends it with a line `Error: <message>`. Failures
before it starts (bad input, credits, unknown model) are JSON error envelopes.

`POST /api/converse/v2` (and `/v3`, the same route under the name SwiftChat's newest app
calls) takes the same request and streams Bedrock ConverseStream events instead: JSON
objects, each followed by a blank line, as the app's Bedrock client parses them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from functools import partial

from quart import Blueprint, Response, current_app
from quart_schema import document_response, validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.body_limits import body_limit, media_json
from backend.http.documented_errors import document_errors
from backend.http.openapi import RawBody
from backend.http.routes.task_streams import event_stream, new_task_reader
from backend.services import app_versions, converse, swiftchat_models, tasks
from backend.streams.delivery import TaskReader
from schemas.events import CancelledEvent, DoneEvent, ErrorEvent, TaskEvent, TokenEvent
from schemas.swiftchat import (
    ContentBlockDelta,
    ContentBlockStop,
    ConverseRequest,
    ConverseStreamEvent,
    ImageRequest,
    ImageResponse,
    MessageStart,
    MessageStop,
    ModelsRequest,
    ModelsResponse,
    StreamMetadata,
    StreamMetrics,
    TextDelta,
    TokenUsage,
    UpgradeRequest,
    UpgradeResponse,
)

blueprint = Blueprint("swiftchat", __name__, url_prefix="/api")


def usage_line(prompt_tokens: int, completion_tokens: int) -> bytes:
    usage = {
        "inputTokens": prompt_tokens,
        "outputTokens": completion_tokens,
        "totalTokens": prompt_tokens + completion_tokens,
    }
    return ("\n" + json.dumps(usage)).encode()


def text_chunks(event: TaskEvent) -> Iterable[bytes]:
    """One task event as SwiftChat's raw text (v1)."""
    if isinstance(event, TokenEvent):
        yield event.delta.encode()
    elif isinstance(event, DoneEvent | CancelledEvent):
        yield usage_line(event.prompt_tokens, event.completion_tokens)
    elif isinstance(event, ErrorEvent):
        yield f"\nError: {event.message}".encode()


class BedrockEvents:
    """Task events as Bedrock ConverseStream events (v2): messageStart, one
    contentBlockDelta per token event, then contentBlockStop, messageStop (not after a
    cancel: Bedrock has no stop reason for it) and metadata with usage and latency. A
    failure ends the body with `Error: <message>`, as SwiftChat's own server does."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def opening(self) -> bytes:
        return ConverseStreamEvent(messageStart=MessageStart()).encode()

    def __call__(self, event: TaskEvent) -> Iterable[bytes]:
        if isinstance(event, TokenEvent):
            delta = ContentBlockDelta(delta=TextDelta(text=event.delta))
            yield ConverseStreamEvent(contentBlockDelta=delta).encode()
        elif isinstance(event, DoneEvent | CancelledEvent):
            yield ConverseStreamEvent(contentBlockStop=ContentBlockStop()).encode()
            if isinstance(event, DoneEvent):
                yield ConverseStreamEvent(messageStop=MessageStop()).encode()
            usage = TokenUsage(
                inputTokens=event.prompt_tokens,
                outputTokens=event.completion_tokens,
                totalTokens=event.prompt_tokens + event.completion_tokens,
            )
            latency = StreamMetrics(latencyMs=round((time.monotonic() - self.started) * 1000))
            metadata = StreamMetadata(usage=usage, metrics=latency)
            yield ConverseStreamEvent(metadata=metadata).encode()
        elif isinstance(event, ErrorEvent):
            yield f"Error: {event.message}".encode()


async def answer_body(
    reader: TaskReader,
    on_abandon: Callable[[], Awaitable[None]],
    encode: Callable[[TaskEvent], Iterable[bytes]],
    opening: bytes = b"",
) -> AsyncIterator[bytes]:
    """The task's events through `encode`; `on_abandon` runs if the client leaves early."""
    finished = False
    try:
        if opening:
            yield opening
        async with aclosing(reader.events()) as events:
            async for entry in events:
                if entry is None:
                    continue
                finished = entry.terminal
                # One write per event: SwiftChat parses each read chunk on its own.
                chunk = b"".join(encode(entry.event()))
                if chunk:
                    yield chunk
    finally:
        if not finished:
            await asyncio.shield(on_abandon())


async def start_answer(data: ConverseRequest) -> tuple[str, TaskReader, Callable]:
    """Create the stateless task of a converse request; its reader and how to abandon it."""
    app = current_app._get_current_object()
    user = current_user()
    # Every answer is read here: its reader's lease is taken with its job.
    lease = tasks.ReaderLease(app.config["SETTINGS"].stream_lease_seconds)
    task = await converse.start_converse(
        user, data, redis=app.config["REDIS"], settings=app.config["SETTINGS"], reader_lease=lease
    )
    reader = await new_task_reader(task, lease.token)
    stop = partial(
        converse.abandon, user, task.id, redis=app.config["REDIS"], settings=app.config["SETTINGS"]
    )
    return task.id, reader, stop


class ConverseTextStream(RawBody):
    """The answer's text as it is generated, then a line with the token usage (labelled
    text/event-stream, as SwiftChat's app reads it)."""

    media_type = "text/event-stream"
    schema = {"type": "string"}
    headers = {"X-Task-Id": "The answer's task id"}


class ConverseEventStream(RawBody):
    """Bedrock ConverseStream events as JSON objects, each followed by a blank line."""

    media_type = "text/event-stream"
    schema = {"type": "string"}


@blueprint.post("/converse")
@document_errors(402, 415, 503)
@body_limit(media_json)
@authenticated
@validate_request(ConverseRequest)
@document_response(ConverseTextStream)
async def converse_stream(data: ConverseRequest) -> Response:
    """Stream an answer to a Bedrock-converse `messages` list as plain text, then usage.

    Stateless: the conversation is not stored, and closing the connection early cancels
    the answer. The body is the answer's text as it is generated, then
    `\\n{"inputTokens":…,"outputTokens":…,"totalTokens":…}`.
    """
    task_id, reader, stop = await start_answer(data)
    response = event_stream(
        answer_body(reader, stop, text_chunks), lambda reason: f"\nError: {reason}".encode()
    )
    response.headers["X-Task-Id"] = task_id
    return response


async def bedrock_event_response(data: ConverseRequest) -> Response:
    task_id, reader, stop = await start_answer(data)
    events = BedrockEvents()
    response = event_stream(
        answer_body(reader, stop, events, events.opening()),
        lambda reason: f"Error: {reason}".encode(),
    )
    response.headers["X-Task-Id"] = task_id
    return response


@blueprint.post("/converse/v2")
@document_errors(402, 415, 503)
@body_limit(media_json)
@authenticated
@validate_request(ConverseRequest)
@document_response(ConverseEventStream)
async def converse_events(data: ConverseRequest) -> Response:
    """Stream an answer as Bedrock ConverseStream events (SwiftChat's v2 app API).

    Same request as `/api/converse`. The body is `{"messageStart": …}`, one
    `{"contentBlockDelta": {"delta": {"text": …}, "contentBlockIndex": 0}}` per token
    event, `{"contentBlockStop": …}`, `{"messageStop": {"stopReason": "end_turn"}}` and
    `{"metadata": {"usage": {"inputTokens", "outputTokens", "totalTokens"}, "metrics":
    {"latencyMs"}}}`, each followed by a blank line; a failure mid-answer ends it with
    `Error: <message>`. Stateless: closing the connection cancels the answer.
    """
    return await bedrock_event_response(data)


@blueprint.post("/converse/v3")
@document_errors(402, 415, 503)
@body_limit(media_json)
@authenticated
@validate_request(ConverseRequest)
@document_response(ConverseEventStream)
async def converse_events_v3(data: ConverseRequest) -> Response:
    """`/api/converse/v2` under the path SwiftChat's newest app calls: the same stream."""
    return await bedrock_event_response(data)


@blueprint.post("/models")
@authenticated
@validate_request(ModelsRequest)
@validate_response(ModelsResponse)
async def models(data: ModelsRequest) -> ModelsResponse:
    """Text models (for converse) and image models (for /api/image) in SwiftChat's shape."""
    return swiftchat_models.available_models(current_app.config["SETTINGS"])


@blueprint.post("/image")
@document_errors(502, 503)
@authenticated
@validate_request(ImageRequest)
@validate_response(ImageResponse)
async def image(data: ImageRequest) -> ImageResponse:
    """Generate an image; `image` is base64. 503 when no image provider is configured."""
    encoded = await swiftchat_models.generate_image(
        data.prompt, data.modelId, data.width, data.height, current_app.config["SETTINGS"]
    )
    return ImageResponse(image=encoded)


@blueprint.post("/upgrade")
@authenticated
@validate_request(UpgradeRequest)
@validate_response(UpgradeResponse)
async def upgrade(data: UpgradeRequest) -> UpgradeResponse:
    """Whether the app at `version` on `os` should upgrade, to which version, from where."""
    info = await app_versions.upgrade_info(data.os, data.version)
    return UpgradeResponse(needUpgrade=info.need_upgrade, version=info.version, url=info.url)
