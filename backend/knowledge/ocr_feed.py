"""A document's OCR settings for its parse, and its OCR progress in the run's report.

    async with ocr_feed(settings, document, report, share=PARSED):
        parsed = await parse(context, document)

The parse child reports each page it starts ("OCR page 3/12", `parsing/parse_progress`);
the runner hands those to `on_progress` on its thread. They are queued onto the event
loop and written in order by one task: the report's current activity (the feed's
heartbeat says "OCR page 3/12 (1s).") and progress (a `share` of the run, page by page),
and a line in the document's log for the first page, the last, and one every
LOG_EVERY_SECONDS between (a 500-page scan does not write 500 lines). The end is
logged with the pages read and their rate. Leaving the block waits for every update,
so none lands after the next step's line.

The options come from the operator's settings (OCR_ENABLED, OCR_PAGE_SECONDS, ...) and
`layout_recognize` from the document's `parser_config`, else its dataset's (the
dataset-level setting), else RAGFlow's default "DeepDOC".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

from backend.knowledge.parsing.ocr_run import OCR_SETUP, OcrOptions, OcrSetup, ocr_text_pages
from backend.knowledge.parsing.parse_progress import ParseProgress
from backend.knowledge.run_report import RunReport
from backend.knowledge.run_watch import RunStopped
from backend.models import Dataset, Document
from backend.settings import Settings

LOG_EVERY_SECONDS = 5.0
LAYOUT_KEY = "layout_recognize"


def ocr_options(settings: Settings, layout_recognize: Any) -> OcrOptions:
    return OcrOptions(
        enabled=settings.ocr_enabled,
        text_pages=ocr_text_pages(layout_recognize),
        page_seconds=settings.ocr_page_seconds,
        dpi=settings.ocr_dpi,
        max_pixels=settings.image_max_pixels,
        max_pages=settings.ocr_max_pages,
        threads=settings.ocr_threads,
        memory_mb=settings.ocr_memory_mb,
    )


async def layout_recognize_of(document: Document) -> Any:
    """The document's `layout_recognize`, else its dataset's, else None (the default)."""
    if LAYOUT_KEY in (document.parser_config or {}):
        return document.parser_config[LAYOUT_KEY]
    dataset = await Dataset.get_or_none(id=document.dataset_id).only("id", "parser_config")
    return None if dataset is None else (dataset.parser_config or {}).get(LAYOUT_KEY)


class OcrFeed:
    """Progress from the runner's thread, written to the report in order on the loop."""

    def __init__(self, report: RunReport, share: float) -> None:
        self.report = report
        self.share = share
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[ParseProgress | None] = asyncio.Queue()
        self.begun: float | None = None
        self.logged_at = 0.0
        self.writer = asyncio.create_task(self.write())

    def on_progress(self, progress: ParseProgress) -> None:
        """Called on the runner's thread; nothing once the loop is closed (shutdown)."""
        with suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, progress)

    def log_line(self, progress: ParseProgress) -> str | None:
        now = time.monotonic()
        if progress.budget_s is None:
            seconds = now - (self.begun or now)
            rate = progress.done / seconds if seconds > 0 else 0.0
            return f"{progress.message} in {seconds:.1f}s ({rate:.2f} pages/s)."
        if self.begun is None:
            self.begun = now
        last = progress.done == progress.total - 1
        if progress.done == 0 or last or now - self.logged_at >= LOG_EVERY_SECONDS:
            self.logged_at = now
            return f"{progress.message}."
        return None

    async def write(self) -> None:
        while (progress := await self.queue.get()) is not None:
            self.report.doing(progress.message if progress.budget_s is not None else "Parsing")
            line = self.log_line(progress)
            fraction = self.share * progress.done / max(progress.total, 1)
            try:
                if line is not None:
                    await self.report.step(fraction, line)
            except RunStopped:
                return  # the run's watch stops the job

    async def drain(self) -> None:
        self.queue.put_nowait(None)
        await self.writer


@asynccontextmanager
async def ocr_feed(
    settings: Settings, document: Document, report: RunReport, *, share: float
) -> AsyncIterator[OcrOptions]:
    """Parses started inside the block use the document's OCR options and report
    their OCR pages to `report` (see the module's docstring)."""
    options = ocr_options(settings, await layout_recognize_of(document))
    feed = OcrFeed(report, share)
    token = OCR_SETUP.set(OcrSetup(options, feed.on_progress))
    try:
        yield options
    except asyncio.CancelledError:
        feed.writer.cancel()
        raise
    except BaseException:
        await feed.drain()  # the pages read so far are logged before the failure
        raise
    else:
        await feed.drain()
    finally:
        OCR_SETUP.reset(token)


@contextmanager
def ocr_settings(settings: Settings, parser_config: dict[str, Any] | None) -> Iterator[None]:
    """Parses started inside the block use these OCR options, without progress (a
    parse that answers its caller directly: QAnything's document_parser)."""
    options = ocr_options(settings, (parser_config or {}).get(LAYOUT_KEY))
    token = OCR_SETUP.set(OcrSetup(options))
    try:
        yield
    finally:
        OCR_SETUP.reset(token)
