"""SwiftChat's backend API at `/api/...`: converse, models, image, upgrade.

`POST /api/converse` answers with a raw text body, as SwiftChat's app reads it: the
answer's text deltas as they are generated, then one final line (after a `\\n`) with the
token usage as Bedrock's JSON `{"inputTokens": n, "outputTokens": n, "totalTokens": n}`.
A failure after the stream started ends it with a line `Error: <message>`. Failures
before it starts (bad input, credits, unknown model) are JSON error envelopes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from functools import partial

from quart import Blueprint, Response, current_app
from quart_schema import validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.routes.task_streams import event_stream, new_task_reader
from backend.services import app_versions, converse, swiftchat_models
from backend.streams.delivery import TaskReader
from schemas.events import CancelledEvent, DoneEvent, ErrorEvent, TokenEvent
from schemas.swiftchat import (
    ConverseRequest,
    ImageRequest,
    ImageResponse,
    ModelsRequest,
    ModelsResponse,
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


async def text_body(
    reader: TaskReader, on_abandon: Callable[[], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """The task's events as SwiftChat's raw text; `on_abandon` runs if the client leaves early."""
    finished = False
    try:
        async with aclosing(reader.events()) as events:
            async for entry in events:
                if entry is None:
                    continue
                finished = entry.terminal
                event = entry.event()
                if isinstance(event, TokenEvent):
                    yield event.delta.encode()
                elif isinstance(event, DoneEvent | CancelledEvent):
                    yield usage_line(event.prompt_tokens, event.completion_tokens)
                elif isinstance(event, ErrorEvent):
                    yield f"\nError: {event.message}".encode()
    finally:
        if not finished:
            await asyncio.shield(on_abandon())


@blueprint.post("/converse")
@authenticated
@validate_request(ConverseRequest)
async def converse_stream(data: ConverseRequest) -> Response:
    """Stream an answer to a Bedrock-converse `messages` list as plain text, then usage.

    Stateless: the conversation is not stored, and closing the connection early cancels
    the answer. The body is the answer's text as it is generated, then
    `\\n{"inputTokens":…,"outputTokens":…,"totalTokens":…}`.
    """
    app = current_app._get_current_object()
    user = current_user()
    task = await converse.start_converse(
        user, data, redis=app.config["REDIS"], settings=app.config["SETTINGS"]
    )
    reader = await new_task_reader(task)
    stop = partial(
        converse.abandon, user, task.id, redis=app.config["REDIS"], settings=app.config["SETTINGS"]
    )
    response = event_stream(text_body(reader, stop))
    response.headers["X-Task-Id"] = task.id
    return response


@blueprint.post("/models")
@authenticated
@validate_request(ModelsRequest)
@validate_response(ModelsResponse)
async def models(data: ModelsRequest) -> ModelsResponse:
    """Text models (for converse) and image models (for /api/image) in SwiftChat's shape."""
    return swiftchat_models.available_models(current_app.config["SETTINGS"])


@blueprint.post("/image")
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
