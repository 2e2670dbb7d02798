"""Which document formats Sluice parses, and whether a file's content is what its name says.

The extension names the format; the content must agree: a PDF starts with `%PDF-`, a
docx/pptx/xlsx is a ZIP package holding that kind of Office part, text formats hold
text. A file that is plainly something else (an image named `.pdf`, a program named
`.txt`) is refused with 415. A file of the right kind that is broken, encrypted or empty
is accepted: parsing then fails it with a reason the user can read (`FAIL`), as RAGFlow
reports bad documents.
"""

from __future__ import annotations

import zipfile
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Literal

import puremagic

from backend.errors import UnsupportedMediaType
from backend.knowledge import image_documents


class DocumentFormat(StrEnum):
    TXT = "txt"
    MD = "md"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"
    PPTX = "pptx"
    XLSX = "xlsx"
    CSV = "csv"
    JSON = "json"
    PNG = "png"
    JPG = "jpg"
    WEBP = "webp"
    TIFF = "tiff"


F = DocumentFormat
EXTENSIONS = {
    "txt": F.TXT,
    "text": F.TXT,
    "md": F.MD,
    "markdown": F.MD,
    "html": F.HTML,
    "htm": F.HTML,
    "pdf": F.PDF,
    "docx": F.DOCX,
    "pptx": F.PPTX,
    "xlsx": F.XLSX,
    "csv": F.CSV,
    "json": F.JSON,
    "png": F.PNG,
    "jpg": F.JPG,
    "jpeg": F.JPG,
    "webp": F.WEBP,
    "tif": F.TIFF,
    "tiff": F.TIFF,
}
CONTENT_TYPES = {
    F.TXT: "text/plain",
    F.MD: "text/markdown",
    F.HTML: "text/html",
    F.PDF: "application/pdf",
    F.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    F.PPTX: "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    F.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    F.CSV: "text/csv",
    F.JSON: "application/json",
    F.PNG: "image/png",
    F.JPG: "image/jpeg",
    F.WEBP: "image/webp",
    F.TIFF: "image/tiff",
}
TEXT_FORMATS = frozenset({F.TXT, F.MD, F.HTML, F.CSV, F.JSON})
# Images are documents too: their text is read by OCR (parsing/images.py).
IMAGE_FORMATS = frozenset({F.PNG, F.JPG, F.WEBP, F.TIFF})
# The folder of its main part inside an Office Open XML package, and what to call it.
OFFICE_PARTS = {F.DOCX: "word/", F.PPTX: "ppt/", F.XLSX: "xl/"}
OFFICE_NAMES = {F.DOCX: "a Word document", F.PPTX: "a PowerPoint deck", F.XLSX: "an Excel workbook"}
ZIP_MAGIC = b"PK\x03\x04"
# Encrypted Office Open XML files (and legacy .doc/.xls/.ppt) are OLE compound files:
# accepted as the format they claim, so parsing can say "encrypted" or "legacy format".
COMPOUND_FILE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
PDF_MAGIC = b"%PDF-"
PDF_MAGIC_WITHIN = 1024
UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Bytes that never appear in text of any encoding we read, beside tab, newlines, form
# feed and escape.
CONTROL_BYTES = bytes(b for b in range(32) if b not in (8, 9, 10, 12, 13, 27))
CONTROL_RATIO = 0.05
# How much of a file's beginning the content checks look at.
SNIFF_BYTES = 64 * 1024

# What each format's content is, as a 415 names it.
EXPECTED = {
    F.TXT: "text",
    F.MD: "text (Markdown)",
    F.HTML: "text (HTML)",
    F.CSV: "text (CSV)",
    F.JSON: "text (JSON)",
    F.PDF: "PDF",
    F.DOCX: "a Word document (DOCX)",
    F.PPTX: "a PowerPoint deck (PPTX)",
    F.XLSX: "an Excel workbook (XLSX)",
}
SURE_SIGNATURE_BYTES = 4
PRINTABLE_BYTES = bytes(range(32, 127)) + b"\t\n\r"

SUPPORTED_HINT = "supported formats: " + ", ".join(sorted(EXTENSIONS))


def suffix_of(name: str) -> str:
    stem, dot, extension = name.rpartition(".")
    return extension.lower() if dot and stem else ""


def format_of_name(name: str) -> DocumentFormat:
    """The format the file's extension names; 415 for one Sluice cannot parse."""
    fmt = EXTENSIONS.get(suffix_of(name))
    if fmt is None:
        raise UnsupportedMediaType(
            f"File '{name}': Sluice cannot parse this type of file ({SUPPORTED_HINT})"
        )
    return fmt


def ragflow_type(fmt: DocumentFormat) -> str:
    """RAGFlow's file type: PDFs are "pdf", images "visual", every other document "doc"."""
    if fmt in IMAGE_FORMATS:
        return "visual"
    return "pdf" if fmt is F.PDF else "doc"


def sure_binary_signature(match: puremagic.main.PureMagicWithConfidence) -> bool:
    """A signature that plain text cannot start with: at the file's start, at least
    SURE_SIGNATURE_BYTES long, with a byte no text has (puremagic also matches short
    printable prefixes: "This is " is its "GNU Info Reader file")."""
    return (
        match.offset == 0
        and len(match.byte_match) >= SURE_SIGNATURE_BYTES
        and bool(match.byte_match.translate(None, PRINTABLE_BYTES))
    )


def what_it_is(head: bytes) -> str | None:
    """What the content is, only when that is certain: plain text, a PDF, or a binary
    format whose signature only that format has; None when it cannot be said for sure."""
    if PDF_MAGIC in head[:PDF_MAGIC_WITHIN]:
        return "a PDF (Portable Document Format) file"
    if looks_like_text(head):
        return "plain text"
    try:
        matches = [match for match in puremagic.magic_string(head) if sure_binary_signature(match)]
    except (puremagic.PureError, ValueError):
        return None
    names = {match.name for match in matches if match.byte_match == matches[0].byte_match}
    if len(names) != 1:
        return None
    name = names.pop()
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def looks_like_text(head: bytes) -> bool:
    if head.startswith(UTF16_32_BOMS):
        return True
    if b"\x00" in head:
        return False
    controls = len(head) - len(head.translate(None, CONTROL_BYTES))
    return controls <= CONTROL_RATIO * len(head)


def office_kind(path: Path | BinaryIO) -> DocumentFormat | Literal["broken", "zip"]:
    """Which Office package the ZIP at `path` (or in a seekable file) is: "zip" for another
    kind of ZIP, "broken" when it cannot be read as a ZIP at all (a damaged file, for
    parsing to report)."""
    try:
        with zipfile.ZipFile(path) as package:
            names = package.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "broken"
    if "[Content_Types].xml" in names:
        for fmt, folder in OFFICE_PARTS.items():
            if any(name.startswith(folder) for name in names):
                return fmt
    return "zip"


def refuse(name: str, fmt: DocumentFormat, actual: str | None) -> UnsupportedMediaType:
    """415: what the name promised, that the content is not that, and what it is only
    when that is certain (never a guess)."""
    expected = EXPECTED.get(fmt, fmt.value.upper())
    found = f"; it is {actual}" if actual else ""
    return UnsupportedMediaType(
        f"File '{name}': its extension says {expected}, but the content is not "
        f"{expected}{found}. Upload the file under the extension of its real format"
    )


def check_content(
    name: str,
    fmt: DocumentFormat,
    head: bytes,
    path: Path | BinaryIO,
    max_pixels: int | None = None,
) -> None:
    """Raise 415 unless the content can be `fmt`. `head` is the file's first bytes (up to
    SNIFF_BYTES) and `path` the stored file (or a seekable file over it: a ranged read of
    the storage), for the ZIP directory of Office files and an image's header (413 over
    `max_pixels`, IMAGE_MAX_PIXELS by default, before any pixel is decoded).
    Blocking (reads a ZIP's directory): run it in a thread."""
    if not head:
        return
    if fmt in TEXT_FORMATS:
        if not looks_like_text(head):
            raise refuse(name, fmt, what_it_is(head))
        return
    if fmt is F.PDF:
        if PDF_MAGIC not in head[:PDF_MAGIC_WITHIN]:
            raise refuse(name, fmt, what_it_is(head))
        return
    if fmt in IMAGE_FORMATS:
        if not image_documents.has_magic(fmt.value, head):
            raise refuse(name, fmt, what_it_is(head))
        image_documents.check_pixels(name, path, max_pixels)
        return
    if head.startswith(COMPOUND_FILE_MAGIC):
        return
    if not head.startswith(ZIP_MAGIC):
        raise refuse(name, fmt, what_it_is(head))
    kind = office_kind(path)
    if kind == "zip":
        raise refuse(name, fmt, "a ZIP archive that holds no Office document")
    if kind != "broken" and kind is not fmt:
        raise refuse(name, fmt, OFFICE_NAMES[DocumentFormat(kind)])
