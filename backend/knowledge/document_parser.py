"""Parsing a file without storing it (QAnything's `document_parser`): the web side.

The upload is read into memory (one file, at most DOCUMENT_MAX_BYTES, the limit of a
document upload), handed to the ingest worker as a `parse_preview` job
(`parse_preview.py`) and its result awaited for DOCUMENT_PARSER_WAIT_SECONDS. The job
expires when the wait does: a worker that only gets to it after the client was told
to retry never parses it. No worker answering in time, or Redis not reachable, is a
503 asking to retry; nothing is stored either way.
"""

from __future__ import annotations

import logging

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from backend.errors import ApiError, BadRequest, PayloadTooLarge, ServiceUnavailable
from backend.job_queue import enqueue
from backend.knowledge import formats
from backend.knowledge.document_uploads import FILE_FIELDS, clean_name, limit_text
from backend.knowledge.file_parts import FilePart
from backend.knowledge.parse_preview import PARSE_PREVIEW_JOB, PreviewFile, PreviewResult
from backend.knowledge.parse_queue import ingest_queue
from backend.models import Dataset
from backend.settings import Settings

log = logging.getLogger("sluice.ingest")

RESULT_POLL_SECONDS = 0.05


class OneFileUpload:
    """The multipart sink: one file part's bytes, in memory, within the size limit."""

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.document_max_bytes
        self.filename: str | None = None
        self.data = bytearray()

    async def start(self, part: FilePart) -> None:
        if part.field not in FILE_FIELDS:
            raise BadRequest(
                f"Unexpected file field '{part.field[:40]}': send the file as the 'file' part"
            )
        if self.filename is not None:
            raise BadRequest("Send one file per request: document_parser parses a single file")
        self.filename = part.filename

    async def write(self, data: bytes) -> None:
        if len(self.data) + len(data) > self.limit:
            raise PayloadTooLarge(
                f"File '{(self.filename or '')[:60]}' is too large: the limit is "
                f"{limit_text(self.limit)} per document"
            )
        self.data.extend(data)

    async def finish(self) -> None:
        return None

    def preview(self, dataset: Dataset | None) -> PreviewFile:
        """The file to parse, with the knowledge base's chunking when one is named;
        a 4xx for a missing, unnamed, unsupported or empty file."""
        if self.filename is None:
            raise BadRequest("No file part: send the file as the 'file' part of the form")
        if not self.filename.strip():
            raise BadRequest("No file selected: the 'file' part has an empty file name")
        name = clean_name(self.filename)
        fmt = formats.format_of_name(name)
        if not self.data:
            raise BadRequest(f"File '{name}' is empty: there is nothing to parse")
        if dataset is None:
            return PreviewFile(name, fmt, bytes(self.data))
        return PreviewFile(
            name, fmt, bytes(self.data), dataset.chunk_method, dict(dataset.parser_config or {})
        )


def not_answered(settings: Settings) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The ingest worker did not parse the file within "
        f"{settings.document_parser_wait_seconds:g} s (it is busy or not running): "
        "try again shortly"
    )


async def parse_in_worker(
    redis: ArqRedis, settings: Settings, preview: PreviewFile
) -> PreviewResult:
    """The worker's chunks of the file; raises the 4xx it found wrong with the file, or
    503 when it does not answer in time."""
    wait = settings.document_parser_wait_seconds
    try:
        job = await enqueue(redis, ingest_queue(settings), PARSE_PREVIEW_JOB, preview, expires=wait)
        assert job is not None  # a fresh random job id is never taken
        result = await job.result(timeout=wait, poll_delay=RESULT_POLL_SECONDS)
    except TimeoutError as error:
        raise not_answered(settings) from error
    except (RedisError, OSError) as error:
        raise ServiceUnavailable("The job queue is unreachable; try again shortly") from error
    except Exception as error:  # the job died (worker timeout, expired, crashed)
        log.warning("parse preview of %r failed in the worker", preview, exc_info=True)
        raise ServiceUnavailable(
            "The ingest worker failed to parse the file; try again shortly"
        ) from error
    if not isinstance(result, PreviewResult):
        raise not_answered(settings)
    if result.status != 200:
        raise ApiError(result.message, status=result.status)
    return result
