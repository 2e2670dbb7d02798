"""Parsing a file without storing it (QAnything's `document_parser`): the ingest
worker's side.

The web process never parses (parsers are CPU-heavy and run untrusted files through C
libraries). It streams the upload into file storage under `previews/` (never into
Redis: six abandoned 15 MB calls once left 16 MB jobs there) and enqueues a small job
naming it. The worker parses it exactly as it parses a stored document, in turns with
every other document (`ingest_turns.py`): the content check of an upload
(`formats.check_content`), then parse *and* chunk in one child process under the
size-proportional time budget, INGEST_PARSE_MEMORY_MB and INGEST_MAX_CHUNKS
(`chunked_parse.py`). The stored payload is deleted when the job ends, whatever the
outcome; a caller who hung up aborts the job, which kills its child at once.

The outcome is data, never an exception: a file the user must fix comes back as an
HTTP status and a message for the web process to answer with.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import ApiError
from backend.knowledge import formats
from backend.knowledge.chunked_parse import chunked_in_child, parse_budget
from backend.knowledge.ingest_turns import IngestTurns
from backend.knowledge.ocr_feed import ocr_settings
from backend.knowledge.parsing.document import ParseFailure
from backend.settings import Settings
from backend.storage.base import FileStorage

PARSE_PREVIEW_JOB = "parse_preview"
MB = 1024 * 1024
UNPARSABLE = 422
# How long a result waits for a caller who never reads it (the web reads and deletes it).
PREVIEW_RESULT_SECONDS = 10
GONE = 410


@dataclass(frozen=True)
class PreviewFile:
    """The upload as the job names it: stored at `key` in the document storage, `size`
    bytes, parsed for `owner_id` (whose turn it takes)."""

    name: str
    fmt: formats.DocumentFormat
    key: str
    size: int
    owner_id: int
    chunk_method: str = "naive"
    parser_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreviewChunk:
    content: str
    # The question and answer of a chunk cut from a question/answer pair (qa method).
    faq: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PreviewResult:
    """Chunks when `status` is 200; otherwise the status and `message` to answer with."""

    status: int
    message: str = ""
    chunks: list[PreviewChunk] = field(default_factory=list)

    def __repr__(self) -> str:  # arq logs results too
        return f"PreviewResult({self.status}, {len(self.chunks)} chunks, {self.message[:80]!r})"


def faq_of(parsed_pairs: tuple[Any, ...], index: int) -> dict[str, str]:
    if index >= len(parsed_pairs):
        return {}
    pair = parsed_pairs[index]
    return {"question": pair.question, "answer": pair.answer}


def read_head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(formats.SNIFF_BYTES)


async def parsed_chunks(
    preview: PreviewFile, settings: Settings, files: FileStorage
) -> PreviewResult:
    """Check, parse and chunk the stored file; raises ParseFailure or the check's 415."""
    async with files.local_copy(preview.key) as path:
        head = await asyncio.to_thread(read_head, path)
        await asyncio.to_thread(
            formats.check_content, preview.name, preview.fmt, head, path, settings.image_max_pixels
        )
        with ocr_settings(settings, preview.parser_config):
            chunked = await chunked_in_child(
                path,
                preview.fmt,
                preview.chunk_method,
                preview.parser_config,
                max_chunks=settings.ingest_max_chunks,
                timeout_s=parse_budget(preview.size, settings),
                memory_limit=settings.ingest_parse_memory_mb * MB or None,
            )
    return PreviewResult(
        200,
        chunks=[
            PreviewChunk(chunk.content, faq_of(chunked.qa_pairs, index))
            for index, chunk in enumerate(chunked.chunks)
        ],
    )


async def preview_chunks(
    preview: PreviewFile, settings: Settings, files: FileStorage, turns: IngestTurns
) -> PreviewResult:
    """The job's work: the file's chunks, or why there are none; the payload is deleted
    at the end either way."""
    try:
        async with turns.parsing.turn(preview.owner_id, preview.key):
            return await parsed_chunks(preview, settings, files)
    except FileNotFoundError:  # the caller gave up and its payload is gone
        return PreviewResult(GONE, f"File '{preview.name}' is no longer stored")
    except ParseFailure as failure:
        return PreviewResult(
            UNPARSABLE, f"File '{preview.name}' cannot be parsed: {failure.reason}"
        )
    except ApiError as error:  # the content check's 415
        return PreviewResult(error.status, error.message)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(files.delete(preview.key))
