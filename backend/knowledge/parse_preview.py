"""Parsing a file without storing it (QAnything's `document_parser`): the ingest
worker's side.

The web process never parses (parsers are CPU-heavy and run untrusted files through C
libraries), so the uploaded bytes travel to the ingest worker inside the arq job and
come back as chunk texts. The worker parses them exactly as it parses a stored
document: the content check of an upload (`formats.check_content`), the parse in a
child process under INGEST_PARSE_TIMEOUT_SECONDS and INGEST_PARSE_MEMORY_MB
(`parsing/runner.py`), then the chunker (`chunking.py`) with the knowledge base's
chunk method and settings. The file lives only in a temporary directory for the
parse; nothing reaches storage, SQL or the search store.

The outcome is data, never an exception: a file the user must fix comes back as an
HTTP status and a message for the web process to answer with.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import ApiError
from backend.knowledge import formats
from backend.knowledge.chunking import chunk_document
from backend.knowledge.parsing.document import ParseFailure
from backend.knowledge.parsing.runner import run_parse_with_limits
from backend.settings import Settings

PARSE_PREVIEW_JOB = "parse_preview"
MB = 1024 * 1024
UNPARSABLE = 422


@dataclass(frozen=True)
class PreviewFile:
    """The upload as the job carries it. Its repr is short: arq logs a job's
    arguments, and a 16 MiB `bytes` repr would cost the worker 64 MB per job."""

    name: str
    fmt: formats.DocumentFormat
    data: bytes = field(repr=False)
    chunk_method: str = "naive"
    parser_config: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"PreviewFile({self.name!r}, {self.fmt.value}, {len(self.data)} bytes)"


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


def parse_file(preview: PreviewFile, settings: Settings) -> PreviewResult:
    """Check, parse and chunk the file. Blocking (it waits on the parse child and runs
    the chunker): call it in a thread."""
    with tempfile.TemporaryDirectory(prefix="sluice-preview-") as folder:
        path = Path(folder) / f"upload.{preview.fmt.value}"
        path.write_bytes(preview.data)
        head = preview.data[: formats.SNIFF_BYTES]
        formats.check_content(preview.name, preview.fmt, head, path)
        parsed = run_parse_with_limits(
            path,
            preview.fmt,
            preview.chunk_method,
            settings.ingest_parse_timeout_seconds,
            settings.ingest_parse_memory_mb * MB or None,
        )
    chunks = chunk_document(parsed, preview.chunk_method, preview.parser_config)
    if not chunks:
        raise ParseFailure(f"File '{preview.name}' has no text once parsed")
    return PreviewResult(
        200,
        chunks=[
            PreviewChunk(chunk.content, faq_of(parsed.qa_pairs, index))
            for index, chunk in enumerate(chunks)
        ],
    )


async def preview_chunks(preview: PreviewFile, settings: Settings) -> PreviewResult:
    """The job's work: the file's chunks, or why there are none."""
    try:
        return await asyncio.to_thread(parse_file, preview, settings)
    except ParseFailure as failure:
        return PreviewResult(
            UNPARSABLE, f"File '{preview.name}' cannot be parsed: {failure.reason}"
        )
    except ApiError as error:  # the content check's 415
        return PreviewResult(error.status, error.message)
