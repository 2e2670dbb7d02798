"""PDF: the text layer of each page, read by PDFium (pypdfium2).

PDFium is Chrome's PDF engine: C++, fast (hundreds of pages a second here), tolerant of
damaged files, and maintained. Each page becomes one section carrying its 1-based page
number, which chunks keep as their positions. There is no OCR: a scanned PDF (pages
that are only images) fails with a reason saying so rather than indexing nothing.

PDFium is not thread-safe: parse PDFs one at a time per process (the runner gives each
document its own process).
"""

from __future__ import annotations

from pathlib import Path

import pypdfium2
import pypdfium2.raw as pdfium_c
import regex

from backend.knowledge.parsing.document import ParsedDocument, ParseFailure, Section

# Control characters PDFium may emit (soft hyphens as \x02, U+FFFE/FFFF markers) that
# are no part of the text; tabs and newlines stay.
NOT_TEXT = regex.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]")
# Pages looked at for images when a PDF has no text at all.
IMAGE_PROBE_PAGES = 20

OPEN_FAILURES = {
    pdfium_c.FPDF_ERR_PASSWORD: (
        "The PDF is password-protected (encrypted): upload a copy without a password"
    ),
    pdfium_c.FPDF_ERR_SECURITY: (
        "The PDF uses an encryption Sluice cannot open: upload a copy without a password"
    ),
}
DAMAGED = "The PDF is damaged or not a PDF at all: it could not be opened ({detail})"


def open_pdf(path: Path) -> pypdfium2.PdfDocument:
    try:
        return pypdfium2.PdfDocument(path)
    except pypdfium2.PdfiumError as exc:
        reason = OPEN_FAILURES.get(exc.err_code)
        raise ParseFailure(reason or DAMAGED.format(detail=str(exc).rstrip("."))) from exc


def page_text(document: pypdfium2.PdfDocument, index: int) -> str:
    page = document[index]
    try:
        text_page = page.get_textpage()
        try:
            text = text_page.get_text_bounded()
        finally:
            text_page.close()
    finally:
        page.close()
    return NOT_TEXT.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def has_images(document: pypdfium2.PdfDocument, pages: int) -> bool:
    for index in range(min(pages, IMAGE_PROBE_PAGES)):
        page = document[index]
        try:
            if next(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]), None) is not None:
                return True
        finally:
            page.close()
    return False


def parse_pdf(path: Path) -> ParsedDocument:
    document = open_pdf(path)
    try:
        pages = len(document)
        if pages == 0:
            raise ParseFailure("The PDF has no pages: nothing to index")
        sections = []
        for index in range(pages):
            text = page_text(document, index)
            if text.strip():
                sections.append(Section(text, page=index + 1))
        if not sections:
            if has_images(document, pages):
                raise ParseFailure(
                    "The PDF has no text layer: its pages are images (a scan?). Sluice does "
                    "not run OCR; upload a PDF with selectable text"
                )
            raise ParseFailure("The PDF contains no text: nothing to index")
        blank = pages - len(sections)
        warnings = (
            (f"{blank} of {pages} pages have no text layer (images only?) and were skipped",)
            if blank
            else ()
        )
        return ParsedDocument(sections=tuple(sections), page_count=pages, warnings=warnings)
    finally:
        document.close()
