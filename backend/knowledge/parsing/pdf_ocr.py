"""Scanned PDF pages: rendered by PDFium and read by OCR, page by page.

Which pages are read (`pages_to_read`):
- a page with no text layer, or almost none (fewer than SCANNED_MAX_CHARS characters:
  a scanner's page number or stamp), that shows pictures: the whole page is rendered
  and OCR'd, and the OCR'd text replaces the scrap of text layer;
- with `layout_recognize` on (RAGFlow's default, "DeepDOC"), also a page that has a
  text layer *and* pictures: the text layer is kept exactly, and the page is rendered
  once more without its text objects, so OCR sees only what the text layer lacks (text
  inside figures, a pasted scan). Lines OCR reads where the text layer already has
  characters (a "searchable" scan's invisible text over its picture) are dropped, so
  nothing is indexed twice. Their text follows the page's text layer;
- a page of text only (no pictures, or small ones: a logo, an icon, under
  FIGURE_MIN_SHARE of the page) is never OCR'd: OCR would read the same words back,
  slower and less exactly.

Pages are rendered at OcrOptions.dpi (200), fewer dots on a page so large it would pass
IMAGE_MAX_PIXELS; OCR reads each page's lines in reading order (`ocr_layout.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pypdfium2
import pypdfium2.raw as pdfium_c

from backend.knowledge.parsing.document import ParseFailure
from backend.knowledge.parsing.ocr_layout import page_text
from backend.knowledge.parsing.ocr_run import OcrOptions, ocr_pages, ocr_text, options

SCANNED_MAX_CHARS = 16
# A picture on a text page is read when it covers at least this share of the page.
FIGURE_MIN_SHARE = 0.04
COVERED = 0.5


@dataclass(frozen=True, slots=True)
class PageKind:
    number: int
    text: str
    picture_share: float

    @property
    def pictures(self) -> bool:
        return self.picture_share > 0

    def scanned(self) -> bool:
        return self.pictures and len("".join(self.text.split())) < SCANNED_MAX_CHARS

    def figures(self) -> bool:
        """Whether the page shows a picture large enough to hold words worth reading."""
        return self.picture_share >= FIGURE_MIN_SHARE


def picture_share(page: pypdfium2.PdfPage) -> float:
    """The share of the page its largest picture covers (0: no picture)."""
    width, height = page.get_size()
    largest = 0.0
    for item in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]):
        left, bottom, right, top = item.get_bounds()
        largest = max(largest, abs((right - left) * (top - bottom)), 1e-9)
    return min(1.0, largest / max(width * height, 1e-9))


def render_scale(page: pypdfium2.PdfPage, settings: OcrOptions) -> float:
    width, height = page.get_size()
    scale = settings.dpi / 72
    if width * height * scale * scale > settings.max_pixels:
        scale = math.sqrt(settings.max_pixels / max(width * height, 1.0))
    return scale


def rendered(page: pypdfium2.PdfPage, scale: float) -> np.ndarray:
    bitmap = page.render(scale=scale, may_draw_forms=True)
    try:
        return np.asarray(bitmap.to_pil().convert("RGB"))
    finally:
        bitmap.close()


def text_boxes(page: pypdfium2.PdfPage) -> list[tuple[float, float, float, float]]:
    """The text layer's boxes (left, bottom, right, top) in PDF points."""
    text_page = page.get_textpage()
    try:
        return [text_page.get_rect(index) for index in range(text_page.count_rects())]
    finally:
        text_page.close()


def uncovered_text(page: pypdfium2.PdfPage, scale: float, pixels: np.ndarray, threads: int) -> str:
    """OCR'd lines of the rendered page that the text layer has no characters under."""
    from backend.knowledge.parsing.ocr import read_lines  # on first use: see ocr.py

    left, _, _, top = page.get_cropbox()
    boxes = text_boxes(page)
    kept = []
    for line in read_lines(pixels, threads):
        x0, x1 = left + line.left / scale, left + line.right / scale
        y0, y1 = top - line.bottom / scale, top - line.top / scale
        area = max((x1 - x0) * (y1 - y0), 1e-6)
        overlap = sum(
            max(0.0, min(x1, r) - max(x0, lo)) * max(0.0, min(y1, t) - max(y0, b))
            for lo, b, r, t in boxes
        )
        if overlap / area < COVERED:
            kept.append(line)
    return page_text(kept)


def picture_text(document: pypdfium2.PdfDocument, number: int, settings: OcrOptions) -> str:
    """The text in a text page's pictures: the page rendered without its text objects."""
    page = document[number - 1]
    try:
        if page.get_rotation() % 360:
            return ""  # text boxes and pixels would need turning to compare: not read
        for item in list(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_TEXT], max_depth=1)):
            page.remove_obj(item)
        scale = render_scale(page, settings)
        return uncovered_text(page, scale, rendered(page, scale), settings.threads)
    finally:
        page.close()


def ocr_document_pages(document: pypdfium2.PdfDocument, kinds: list[PageKind]) -> dict[int, str]:
    """The OCR'd text of the pages that need it, by page number: a scanned page's whole
    text, or what a text page's pictures add."""
    settings = options()
    scanned = {kind.number for kind in kinds if kind.scanned()}
    mixed = {
        kind.number
        for kind in kinds
        if settings.text_pages and kind.figures() and not kind.scanned()
    }
    wanted = sorted(scanned | mixed)
    if not wanted or not settings.enabled:
        return {}
    if len(wanted) > settings.max_pages:
        raise ParseFailure(
            f"The PDF has {len(wanted)} pages to read by OCR, more than the "
            f"{settings.max_pages} allowed (OCR_MAX_PAGES): split it"
        )

    def read(number: int) -> str:
        if number in mixed:
            return picture_text(document, number, settings)
        page = document[number - 1]
        try:
            pixels = rendered(page, render_scale(page, settings))
        finally:
            page.close()
        return ocr_text(pixels)

    return ocr_pages(wanted, len(kinds), read)
