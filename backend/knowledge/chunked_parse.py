"""Parse and chunk in one limited child process: what the ingest worker gets back.

Chunking used to run in the worker on the sections the child sent back: a 15 MB file's
sections crossed the pipe, the chunker's working set grew in the worker, and the worker
reached 1.2 GB where the child was capped at 1 GB. Now the child
(`parsing/runner.py`: its time limit, its memory cap) parses *and* chunks, and checks
the chunk cap (INGEST_MAX_CHUNKS) before anything is sent: the worker only ever holds a
document's chunks, and a document past the cap fails with the reason without them.

The forkserver imports `chunk_warmup.py` once (`runner.PRELOAD`), which loads the
tokenizer and jieba's dictionary there (about a second each): each child inherits them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.knowledge.chunking import Chunk, chunk_document
from backend.knowledge.parsing.document import ParseFailure, QAPair
from backend.knowledge.parsing.parse import parse_document
from backend.knowledge.parsing.runner import parse_context, run_parse_with_limits
from backend.settings import Settings

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ChunkedDocument:
    """A document's chunks and what parsing found, for the progress log."""

    chunks: tuple[Chunk, ...]
    qa_pairs: tuple[QAPair, ...]
    page_count: int | None
    section_count: int
    char_count: int
    warnings: tuple[str, ...]
    parse_seconds: float
    chunk_seconds: float

    @property
    def token_count(self) -> int:
        return sum(chunk.token_count for chunk in self.chunks)


def too_many_chunks(count: int, limit: int) -> str:
    return (
        f"The document makes {count} chunks, more than the {limit} allowed per document "
        "(INGEST_MAX_CHUNKS): split it, or use a larger chunk_token_num"
    )


def parse_and_chunk(
    path: Path,
    fmt: Any,
    chunk_method: str,
    parser_config: dict[str, Any] | None = None,
    max_chunks: int = 0,
) -> ChunkedDocument:
    """Parse the file and cut it into chunks; ParseFailure when it has no text or makes
    more than `max_chunks` chunks (0: no cap). Runs in the limited child."""
    begun = time.perf_counter()
    parsed = parse_document(path, fmt, chunk_method)
    parsed_at = time.perf_counter()
    chunks = chunk_document(parsed, chunk_method, parser_config)
    if not chunks:
        raise ParseFailure("The document has no text to index once parsed")
    if max_chunks and len(chunks) > max_chunks:
        raise ParseFailure(too_many_chunks(len(chunks), max_chunks))
    return ChunkedDocument(
        chunks=tuple(chunks),
        qa_pairs=parsed.qa_pairs,
        page_count=parsed.page_count,
        section_count=len(parsed.sections),
        char_count=parsed.char_count,
        warnings=parsed.warnings,
        parse_seconds=parsed_at - begun,
        chunk_seconds=time.perf_counter() - parsed_at,
    )


def start_parse_server() -> None:
    """Start the parse forkserver now, with its preloads (the parsers, the tokenizer,
    jieba: a few seconds), so the first document does not wait for them (worker start-up)."""
    # A no-op child: the server forks it only once its preloads are loaded.
    child = parse_context().Process(target=int, name="sluice-parse-warm-up", daemon=True)
    child.start()
    child.join()
    child.close()


async def chunked_in_child(
    path: Path,
    fmt: Any,
    chunk_method: str,
    parser_config: dict[str, Any] | None,
    *,
    max_chunks: int,
    timeout_s: float,
    memory_limit: int | None,
) -> ChunkedDocument:
    """`parse_and_chunk` in a limited child, awaited from async code. Cancelling the
    caller (a cancelled document, a caller who hung up) kills the child at once, so its
    CPU and memory come back now rather than at its time limit."""
    stop = threading.Event()
    work = asyncio.ensure_future(
        asyncio.to_thread(
            run_parse_with_limits,
            path,
            fmt,
            chunk_method,
            timeout_s,
            memory_limit,
            target=parse_and_chunk,
            extra=(dict(parser_config or {}), max_chunks),
            stop=stop,
        )
    )
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.gather(work, return_exceptions=True)  # the child is gone
        raise


def parse_budget(size: int, settings: Settings) -> float:
    """Seconds a file of `size` bytes may take to parse and chunk: proportional to its
    size, at most INGEST_PARSE_TIMEOUT_SECONDS, so a small file never holds a parser (or
    another user's small file behind it) for long."""
    budget = settings.ingest_parse_base_seconds + size / MB * settings.ingest_parse_seconds_per_mb
    return min(settings.ingest_parse_timeout_seconds, budget)
