"""What OCR may do in a parse, and the page loop that reports "OCR page 3/12" as it goes.

`OcrOptions` travels from the ingest worker to the parse child (`runner.py`): the
operator's switch (OCR_ENABLED), the per-page budget (OCR_PAGE_SECONDS), the rendering
resolution and pixel limit, and whether pages that have a text layer are OCR'd too —
RAGFlow's `parser_config.layout_recognize` ("DeepDOC" or true, its default: yes;
"Plain Text" or false: only pages without text). The child keeps them in a module
global (`configure`), so the parsers read them without every parse signature carrying
them. Each page is announced before it is read (`parse_progress.report`) with its
budget, and the child's CPU limit is raised by that budget (`allow_cpu`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.knowledge.parsing.ocr_layout import page_text
from backend.knowledge.parsing.parse_progress import ParseProgress, allow_cpu, report

OCR_FORMATS = frozenset({"pdf", "png", "jpg", "webp", "tiff"})
# RAGFlow's values of `layout_recognize` that mean "text layer only" (its PlainParser).
PLAIN_TEXT = frozenset({"plain text", "plaintext", "plain", "false", "0", "off", "none", ""})


@dataclass(frozen=True, slots=True)
class OcrOptions:
    enabled: bool = True
    text_pages: bool = True
    page_seconds: float = 60.0
    dpi: int = 200
    max_pixels: int = 4096 * 4096
    max_pages: int = 2000
    threads: int = 1
    # The parse child's memory cap for a document OCR may read (PDFs, images), when
    # larger than the parse's own: ONNX Runtime's detector needs 500-700 MB for a page.
    memory_mb: int = 1536


@dataclass(frozen=True, slots=True)
class OcrSetup:
    """What parses started from this context (the ingest job's task, and the thread it
    runs the runner on: asyncio.to_thread copies the context) use when their caller
    passes nothing: the document's OCR options, and where its progress goes."""

    options: OcrOptions
    on_progress: Callable[[ParseProgress], None] | None = None


OCR_SETUP: ContextVar[OcrSetup | None] = ContextVar("ocr_setup", default=None)


def ocr_text_pages(layout_recognize: Any) -> bool:
    """Whether `layout_recognize` asks for OCR on pages with a text layer: RAGFlow's
    default "DeepDOC" (and true, a vision model's name, or unset) does; "Plain Text" and
    false do not."""
    if layout_recognize is None or layout_recognize is True:
        return True
    if layout_recognize is False:
        return False
    return str(layout_recognize).strip().lower() not in PLAIN_TEXT


_options = OcrOptions()


def configure(options: OcrOptions | None) -> None:
    """Set this process's OCR options (the parse child does, first)."""
    global _options
    _options = options or OcrOptions()


def options() -> OcrOptions:
    return _options


def ocr_memory_limit(memory_limit: int | None, fmt: str, ocr: OcrOptions | None) -> int | None:
    """The parse child's memory cap: OcrOptions.memory_mb for a format OCR may read."""
    if not memory_limit or ocr is None or not ocr.enabled or str(fmt) not in OCR_FORMATS:
        return memory_limit
    return max(memory_limit, ocr.memory_mb * 1024 * 1024)


def ocr_text(pixels: np.ndarray) -> str:
    """A page image's text, in reading order. OCR's libraries are imported here, on
    first use, not by every parse child (`ocr.py`)."""
    from backend.knowledge.parsing.ocr import read_lines

    return page_text(read_lines(pixels, _options.threads))


def ocr_pages(pages: Sequence[int], total: int, read: Callable[[int], str]) -> dict[int, str]:
    """`read(page)` for each page number in `pages` (1-based, of `total`): their text by
    page number. Reports "OCR page k/n" before each, with the per-page budget, and the
    end with none."""
    texts: dict[int, str] = {}
    count = len(pages)
    budget = _options.page_seconds
    for done, page in enumerate(pages):
        allow_cpu(budget * _options.threads)
        report(ParseProgress(f"OCR page {page}/{total}", done, count, budget))
        texts[page] = read(page)
    report(ParseProgress(f"OCR read {count} of {total} pages", count, count, None))
    return texts
