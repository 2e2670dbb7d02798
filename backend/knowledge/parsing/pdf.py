"""PDF: the text layer of each page, read by PDFium (pypdfium2).

PDFium is Chrome's PDF engine: C++, fast (hundreds of pages a second here), tolerant of
damaged files, and maintained. Each page becomes one section carrying its 1-based page
number, which chunks keep as their positions. Pages that are pictures (a scan) are
rendered and read by OCR, page by page, and so are the pictures of text pages when
`layout_recognize` asks for it (`pdf_ocr.py`). A PDF where nothing yields text fails
with a reason saying why (no text, blank scans, OCR turned off).

PDFium is not thread-safe: parse PDFs one at a time per process (the runner gives each
document its own process).
"""

from __future__ import annotations

from pathlib import Path

import pypdfium2
import pypdfium2.raw as pdfium_c
import regex

from backend.knowledge.parsing.document import ParsedDocument, ParseFailure, Section
from backend.knowledge.parsing.ocr_run import options
from backend.knowledge.parsing.pdf_ocr import PageKind, ocr_document_pages, picture_share

# Control characters PDFium may emit (soft hyphens as \x02, U+FFFE/FFFF markers) that
# are no part of the text; tabs and newlines stay.
NOT_TEXT = regex.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]")

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


def page_kind(document: pypdfium2.PdfDocument, index: int) -> PageKind:
    """The page's text layer and whether it shows pictures."""
    page = document[index]
    try:
        text_page = page.get_textpage()
        try:
            text = text_page.get_text_bounded()
        finally:
            text_page.close()
        share = picture_share(page)
    finally:
        page.close()
    text = NOT_TEXT.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return PageKind(index + 1, text, share)


def page_sections(kinds: list[PageKind], ocr: dict[int, str]) -> list[Section]:
    """A section per page with text: a scan's OCR'd text, or the text layer followed
    by what OCR read in the page's pictures."""
    sections = []
    for kind in kinds:
        read = ocr.get(kind.number, "").strip()
        if kind.scanned() and kind.number in ocr:
            text = read
        else:
            text = (
                f"{kind.text.rstrip()}\n\n{read}"
                if read and kind.text.strip()
                else kind.text or read
            )
        if text.strip():
            sections.append(Section(text, page=kind.number))
    return sections


def nothing_read(kinds: list[PageKind]) -> ParseFailure:
    pages = len(kinds)
    if not any(kind.pictures for kind in kinds):
        return ParseFailure("The PDF contains no text: nothing to index")
    if not options().enabled:
        return ParseFailure(
            "The PDF has no text layer: its pages are images (a scan?) and OCR is turned "
            "off on this server (OCR_ENABLED); upload a PDF with selectable text"
        )
    return ParseFailure(
        f"OCR found no text on the PDF's {pages} page{'s' if pages > 1 else ''} (blank "
        "scans, or images without words?): nothing to index"
    )


def skipped_pages(kinds: list[PageKind], ocr: dict[int, str], kept: int) -> tuple[str, ...]:
    pages = len(kinds)
    if kept == pages:
        return ()
    scans = [kind for kind in kinds if kind.scanned()]
    if scans and not ocr:
        return (
            f"{len(scans)} of {pages} pages are images (a scan?) and OCR is turned off "
            "(OCR_ENABLED): they were skipped",
        )
    unread = [kind for kind in scans if not ocr.get(kind.number, "").strip()]
    blank = pages - kept - len(unread)
    warnings = []
    if unread:
        warnings.append(f"OCR found no text on {len(unread)} of {pages} pages (blank scans?)")
    if blank:
        warnings.append(
            f"{blank} of {pages} pages have no text layer (images only?) and were skipped"
        )
    return tuple(warnings)


def parse_pdf(path: Path) -> ParsedDocument:
    document = open_pdf(path)
    try:
        pages = len(document)
        if pages == 0:
            raise ParseFailure("The PDF has no pages: nothing to index")
        kinds = [page_kind(document, index) for index in range(pages)]
        ocr = ocr_document_pages(document, kinds)
        sections = page_sections(kinds, ocr)
        if not sections:
            raise nothing_read(kinds)
        warnings = skipped_pages(kinds, ocr, len(sections))
        return ParsedDocument(sections=tuple(sections), page_count=pages, warnings=warnings)
    finally:
        document.close()
