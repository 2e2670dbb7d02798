"""Parsing a file without storing it (QAnything's `document_parser`): the web side.

The upload streams into file storage under `previews/<random id>.<format>` (one file, at
most DOCUMENT_MAX_BYTES, the limit of a document upload; never whole in memory, never
in Redis), and a small `parse_preview` job naming it goes to the ingest worker
(`parse_preview.py`), whose result is awaited for DOCUMENT_PARSER_WAIT_SECONDS, then
read and deleted at once. The job expires when the wait does: a worker that only gets to
it after the client was told to retry never parses it. A caller who hangs up (the
request is cancelled) aborts the job, which stops its parse, and the stored file is
deleted when the request ends, whatever happened. No worker answering in time, or
Redis not reachable, is a 503 asking to retry; nothing is kept either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from arq.connections import ArqRedis
from arq.constants import result_key_prefix
from arq.jobs import Job
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
from backend.storage.base import FileStorage, StorageWriter

log = logging.getLogger("sluice.ingest")

RESULT_POLL_SECONDS = 0.05
# The folder of the document storage that holds uploads waiting to be parsed.
PREVIEW_FOLDER = "previews"


class OneFileUpload:
    """The multipart sink: one file part streamed into storage within the size limit.
    Leave it through `discard()` (in a `finally`): it removes the stored file."""

    def __init__(self, settings: Settings, files: FileStorage) -> None:
        self.limit = settings.document_max_bytes
        self.files = files
        self.filename: str | None = None
        self.name = ""
        self.fmt: formats.DocumentFormat | None = None
        self.key = ""
        self.writing = contextlib.AsyncExitStack()
        self.writer: StorageWriter | None = None
        self.size = 0

    async def start(self, part: FilePart) -> None:
        if part.field not in FILE_FIELDS:
            raise BadRequest(
                f"Unexpected file field '{part.field[:40]}': send the file as the 'file' part"
            )
        if self.filename is not None:
            raise BadRequest("Send one file per request: document_parser parses a single file")
        self.filename = part.filename
        if not part.filename.strip():
            raise BadRequest("No file selected: the 'file' part has an empty file name")
        self.name = clean_name(part.filename)
        self.fmt = formats.format_of_name(self.name)
        self.key = f"{PREVIEW_FOLDER}/{uuid.uuid4().hex}.{self.fmt.value}"
        self.writer = await self.writing.enter_async_context(self.files.writing(self.key))

    async def write(self, data: bytes) -> None:
        if self.size + len(data) > self.limit:
            raise PayloadTooLarge(
                f"File '{(self.filename or '')[:60]}' is too large: the limit is "
                f"{limit_text(self.limit)} per document"
            )
        assert self.writer is not None
        await self.writer.write(data)
        self.size += len(data)

    async def finish(self) -> None:
        return None

    async def keep(self) -> None:
        """The file is complete: store it."""
        await self.writing.aclose()
        self.writer = None

    async def discard(self) -> None:
        """Drop a file still being written, and remove a stored one."""
        if self.writer is not None:
            self.writer = None
            with contextlib.suppress(Exception):
                await self.writing.__aexit__(Discarded, Discarded(), None)
        if self.key:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.files.delete(self.key))

    def preview(self, dataset: Dataset | None, owner_id: int) -> PreviewFile:
        """The stored file to parse, with the knowledge base's chunking when one is
        named; a 4xx for a missing or empty file."""
        if self.filename is None or self.fmt is None:
            raise BadRequest("No file part: send the file as the 'file' part of the form")
        if not self.size:
            raise BadRequest(f"File '{self.name}' is empty: there is nothing to parse")
        if dataset is None:
            return PreviewFile(self.name, self.fmt, self.key, self.size, owner_id)
        return PreviewFile(
            self.name,
            self.fmt,
            self.key,
            self.size,
            owner_id,
            dataset.chunk_method,
            dict(dataset.parser_config or {}),
        )


class Discarded(Exception):
    """Raised into a storage write to discard it."""


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
    503 when it does not answer in time. Cancelled (the caller hung up), it aborts the
    job."""
    wait = settings.document_parser_wait_seconds
    job: Job | None = None
    try:
        job = await enqueue(redis, ingest_queue(settings), PARSE_PREVIEW_JOB, preview, expires=wait)
        assert job is not None  # a fresh random job id is never taken
        result = await job.result(timeout=wait, poll_delay=RESULT_POLL_SECONDS)
    except asyncio.CancelledError:
        if job is not None:
            await asyncio.shield(abandon(job))
        raise
    except TimeoutError as error:
        if job is not None:
            await abandon(job)
        raise not_answered(settings) from error
    except (RedisError, OSError) as error:
        raise ServiceUnavailable("The job queue is unreachable; try again shortly") from error
    except Exception as error:  # the job died (worker timeout, expired, crashed)
        log.warning("parse preview of %r failed in the worker", preview, exc_info=True)
        raise ServiceUnavailable(
            "The ingest worker failed to parse the file; try again shortly"
        ) from error
    finally:
        if job is not None:
            with contextlib.suppress(RedisError, OSError):
                await asyncio.shield(redis.delete(result_key_prefix + job.job_id))
    if not isinstance(result, PreviewResult):
        raise not_answered(settings)
    if result.status != 200:
        raise ApiError(result.message, status=result.status)
    return result


async def abandon(job: Job) -> None:
    """Nobody waits for the job any more: ask its worker to stop it (a running parse is
    cancelled, its child killed; a queued one is never started)."""
    with contextlib.suppress(RedisError, OSError, TimeoutError):
        await job.abort(timeout=0, poll_delay=0.01)
