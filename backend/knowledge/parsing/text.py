"""Plain text and Markdown: decoded in whatever encoding they were saved in.

UTF-8 (the common case) is tried first and strictly; a byte-order mark names UTF-8/16/32
outright; anything else (GB18030, Big5, Shift-JIS, Windows-1252, ...) is identified by
charset-normalizer, so a Chinese file saved by an old editor reads as Chinese rather than
mojibake. Markdown is kept as written (its markup reads fine and searches fine); its ATX
headings (`# Title`) become sections of their own so the `manual` chunk method can start
a chunk at each.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import charset_normalizer
import regex

from backend.knowledge.parsing.document import ParsedDocument, ParseFailure, Section, require_text

BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
ATX_HEADING = regex.compile(r"^ {0,3}#{1,6}(?:[ \t].*)?$")
FENCE = regex.compile(r"^ {0,3}(```|~~~)")


def decode_text(data: bytes, what: str = "The file") -> str:
    """`data` as text, newlines normalised to "\\n"; ParseFailure when it is no text in
    any encoding charset-normalizer knows."""
    text = None
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ParseFailure(f"{what} is damaged: its text is not valid {encoding}") from exc
            break
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            best = charset_normalizer.from_bytes(data).best()
            if best is None:
                raise ParseFailure(
                    f"{what} is not text in any encoding Sluice recognises; save it as UTF-8"
                ) from None
            text = str(best)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def read_text(path: Path, what: str = "The file") -> str:
    return decode_text(path.read_bytes(), what)


def parse_text(path: Path) -> ParsedDocument:
    return require_text([Section(read_text(path))], "The file")


def markdown_sections(text: str) -> list[Section]:
    """`text` cut before each ATX heading outside code fences; headings are sections of
    their own."""
    sections: list[Section] = []
    body: list[str] = []
    fenced = False

    def flush() -> None:
        if body:
            sections.append(Section("\n".join(body)))
            body.clear()

    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        if not fenced and ATX_HEADING.match(line):
            flush()
            sections.append(Section(line.strip(), heading=True))
        else:
            body.append(line)
    flush()
    return sections


def parse_markdown(path: Path) -> ParsedDocument:
    return require_text(markdown_sections(read_text(path)), "The file")
