"""Reading a multipart/form-data body as it arrives, file parts handed on chunk by chunk.

Quart's own form parsing spools every file before the route runs; uploads of documents
instead go straight from the socket to their storage, so size limits stop a request
the moment it passes them and nothing is written twice. Werkzeug's sans-IO multipart
decoder does the parsing; this module feeds it `request.body` and hands each file's
bytes to a sink. Text fields are small and returned whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Event,
    Field,
    File,
    MultipartDecoder,
    NeedData,
)

from backend.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from backend.knowledge.file_parts import FilePart, FileSink

MAX_PARTS = 100
FIELD_MAX_BYTES = 64 * 1024
# Bytes the decoder may hold at once: part headers, or data waiting for a boundary.
DECODER_BUFFER_BYTES = 1024 * 1024
FEED_BYTES = 64 * 1024


def multipart_boundary(content_type: str | None) -> bytes:
    mimetype, options = parse_options_header(content_type or "")
    if mimetype != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Send the files as multipart/form-data (got '{mimetype[:60] or 'no content type'}'): "
            "one 'file' part per file, e.g. curl -F 'file=@report.pdf'"
        )
    boundary = options.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise BadRequest("The multipart Content-Type has no valid boundary parameter")
    return boundary.encode("latin-1", "replace")


def malformed(reason: str) -> BadRequest:
    return BadRequest(f"Malformed multipart body ({reason}): send multipart/form-data")


class FieldText:
    """A text field's bytes as they arrive, bounded."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data = bytearray()

    def add(self, data: bytes) -> None:
        self.data.extend(data)
        if len(self.data) > FIELD_MAX_BYTES:
            raise PayloadTooLarge(
                f"Form field '{self.name[:40]}' is too long: at most {FIELD_MAX_BYTES} bytes"
            )

    def text(self) -> str:
        try:
            value = self.data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadRequest(f"Form field '{self.name[:40]}' is not UTF-8 text") from error
        if "\x00" in value:
            raise Unprocessable(f"Form field '{self.name[:40]}' must not contain NUL characters")
        return value


class PartReader:
    """Turns decoder events into sink calls and collected fields."""

    def __init__(self, sink: FileSink, fields: dict[str, str] | None = None) -> None:
        self.sink = sink
        self.fields: dict[str, str] = {} if fields is None else fields
        self.field: FieldText | None = None
        self.in_file = False

    @property
    def inside_part(self) -> bool:
        return self.in_file or self.field is not None

    async def handle(self, event: Event) -> None:
        if isinstance(event, File):
            part = FilePart(event.name or "", event.filename, event.headers.get("content-type"))
            await self.sink.start(part)
            self.in_file = True
        elif isinstance(event, Field):
            self.field = FieldText(event.name or "")
        elif isinstance(event, Data) and self.in_file:
            if event.data:
                await self.sink.write(event.data)
            if not event.more_data:
                self.in_file = False
                await self.sink.finish()
        elif isinstance(event, Data) and self.field is not None:
            self.field.add(event.data)
            if not event.more_data:
                self.fields[self.field.name] = self.field.text()
                self.field = None


async def read_multipart(
    body: AsyncIterable[bytes],
    content_type: str | None,
    sink: FileSink,
    fields: dict[str, str] | None = None,
) -> dict[str, str]:
    """Decode the whole body, streaming file parts into `sink`; return the text fields
    (the last value of a repeated name). Raises a 4xx ApiError for a body that is not
    well-formed multipart; an error raised by the sink propagates as it is. `fields`,
    when given, is filled as fields arrive, so a sink sees those sent before its file
    (QAnything sends the knowledge base's id as a field before the files)."""
    decoder = MultipartDecoder(
        multipart_boundary(content_type), DECODER_BUFFER_BYTES, max_parts=MAX_PARTS
    )
    reader = PartReader(sink, fields)
    try:
        async for chunk in body:
            # Fed in slices: a body that arrived faster than it was read comes in one
            # large chunk, and the decoder bounds what it buffers at once.
            for start in range(0, len(chunk), FEED_BYTES):
                decoder.receive_data(chunk[start : start + FEED_BYTES])
                while not isinstance(event := decoder.next_event(), NeedData):
                    await reader.handle(event)
        decoder.receive_data(None)
        # Epilogue when the body ended with its closing boundary; a truncated body
        # raises ValueError or leaves data of an unfinished part.
        ending = decoder.next_event()
    except RequestEntityTooLarge as error:
        raise PayloadTooLarge(
            f"Too many parts or too long part headers: at most {MAX_PARTS} parts per request"
        ) from error
    except (ValueError, UnicodeDecodeError) as error:
        raise malformed(str(error)[:120]) from error
    if not isinstance(ending, Epilogue) or reader.inside_part:
        raise malformed("the body ended before its closing boundary")
    return reader.fields
