"""`GET /api/v1/events`: the caller's document status feed as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from quart import Blueprint, Response, current_app, request
from quart_schema import document_headers, document_response, validate_querystring
from sse_starlette import ServerSentEvent

from backend.http.auth import authenticated, current_user
from backend.http.credential_guard import CREDENTIAL_ENDED_SCHEMA
from backend.http.documented_errors import document_errors
from backend.http.drain import restart_frame
from backend.http.openapi import RawBody, sse_frame_schema
from backend.http.routes.task_streams import event_stream
from backend.http.stream_hub import hub_for
from backend.streams.feed_delivery import FeedEntry, FeedReader, open_feed_reader
from backend.streams.sse import HEARTBEAT, SEPARATOR
from schemas.feed import DocumentEvent, FeedEventType, FeedResetEvent
from schemas.streams import StreamHeaders, StreamQuery

blueprint = Blueprint("events", __name__, url_prefix="/api/v1/events")


def data_schema(model: type[DocumentEvent] | type[FeedResetEvent]) -> dict[str, Any]:
    """A feed event's `data`: the model without `type`, its enums inlined."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    schema["properties"].pop("type", None)
    schema["required"] = [name for name in schema.get("required", []) if name != "type"]
    for name, field in schema["properties"].items():
        if "$ref" in field:
            schema["properties"][name] = definitions[field["$ref"].rsplit("/", 1)[-1]]
    return schema


class FeedEventStream(RawBody):
    """A text/event-stream of document events, each frame with an `id:` (a `feed.reset`
    notice has none, nor the `error` that ends the stream when your credential is revoked
    or expires); the schema is one frame's."""

    media_type = "text/event-stream"
    schema = sse_frame_schema(
        {
            kind.value: data_schema(DocumentEvent)
            for kind in FeedEventType
            if kind is not FeedEventType.RESET
        },
        with_id=True,
        unnumbered={
            FeedEventType.RESET.value: data_schema(FeedResetEvent),
            "error": CREDENTIAL_ENDED_SCHEMA,
        },
    )


def encode_feed_entry(entry: FeedEntry) -> bytes:
    # The reset notice has no id: an empty `id:` line would clear EventSource's last id.
    return ServerSentEvent(
        id=entry.id or None, event=entry.type, data=entry.data, sep=SEPARATOR
    ).encode()


async def feed_frames(reader: FeedReader) -> AsyncIterator[bytes]:
    retry = round(reader.settings.sse_retry_seconds * 1000)
    yield ServerSentEvent(retry=retry, sep=SEPARATOR).encode()
    async with aclosing(reader.events()) as events:
        async for entry in events:
            yield HEARTBEAT if entry is None else encode_feed_entry(entry)


@blueprint.get("")
@document_errors(400)
@authenticated(query_token=True)
@validate_querystring(StreamQuery)
@document_headers(StreamHeaders)
@document_response(FeedEventStream)
async def stream_events(query_args: StreamQuery) -> Response:
    """Your document status feed as Server-Sent Events (text/event-stream), until you
    disconnect.

    Frames: `document.progress`, `document.done`, `document.failed`,
    `document.cancelled`, each with an `id:` and JSON data {document_id, dataset_id,
    document_name, run, progress, progress_msg (the newest log line), chunk_count,
    token_count, process_duration, timestamp}. Progress is throttled to a few events a
    second per document; final states always arrive. Resume with the `Last-Event-ID`
    header (EventSource sends it) or `?last_event_id=` to get what you missed within the
    feed's retention; `?last_event_id=0-0` replays all it keeps. A resume point no
    longer kept first gets `feed.reset`: re-read your documents' state. Any number of
    connections may read the feed; reading consumes nothing. `?access_token=` is
    accepted for clients that cannot set headers.
    """
    app = current_app._get_current_object()
    last_event_id = request.headers.get("Last-Event-ID") or query_args.last_event_id
    reader = await open_feed_reader(
        current_user(),
        last_event_id,
        redis=app.config["REDIS"],
        hub=hub_for(app),
        settings=app.config["SETTINGS"],
    )
    return event_stream(feed_frames(reader), restart_frame=restart_frame)
