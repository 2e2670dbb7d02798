"""OCR'd lines in reading order, as text with line and paragraph breaks.

The detector finds line boxes in no reliable order. A page is read as a person reads a
single-column page: boxes whose vertical centres lie within half a line of each other
are one row (a table's cells, a heading's number and its words), read left to right;
rows top to bottom, each on its own line. A gap between rows clearly wider than the
page's usual one (a blank line, a heading's space) starts a paragraph: an empty line,
as in text typed with paragraphs. So chunking cuts at the same places (`delimiter`
"\\n") and keyword search sees the same words as in born-digital text.

Pieces of a row are joined by a space, except between two CJK characters (Chinese
and Japanese are written without spaces). Multi-column layouts are read row by row
across the columns: no column detection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

import regex

# Full-width punctuation (U+3000-303F, U+FF00-FFEF) counts as CJK: no space beside it.
CJK_EDGE = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\u3000-\u303f\uff00-\uffef]")
SAME_ROW = 0.5
PARAGRAPH_GAP = 1.6
PARAGRAPH_MIN_EXTRA = 0.6


@dataclass(frozen=True, slots=True)
class OcrLine:
    """A line of text found on a page, with its box in the page's pixels."""

    text: str
    left: float
    top: float
    right: float
    bottom: float
    score: float

    @property
    def height(self) -> float:
        return self.bottom - self.top


def rows_of(lines: Sequence[OcrLine]) -> list[list[OcrLine]]:
    """`lines` grouped into rows (top to bottom), each row's pieces left to right."""
    if not lines:
        return []
    typical = median(line.height for line in lines)
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda item: (item.top + item.bottom) / 2):
        centre = (line.top + line.bottom) / 2
        if rows:
            row = rows[-1]
            row_centre = sum((item.top + item.bottom) / 2 for item in row) / len(row)
            if abs(centre - row_centre) <= SAME_ROW * typical:
                row.append(line)
                continue
        rows.append([line])
    return [sorted(row, key=lambda item: item.left) for row in rows]


def joined(row: Sequence[OcrLine]) -> str:
    text = ""
    for piece in row:
        if text and not (CJK_EDGE.match(text[-1]) and CJK_EDGE.match(piece.text[0])):
            text += " "
        text += piece.text
    return text


def page_text(lines: Sequence[OcrLine]) -> str:
    """The page's text: rows as lines, paragraphs separated by an empty line."""
    rows = rows_of(lines)
    if not rows:
        return ""
    tops = [min(item.top for item in row) for row in rows]
    bottoms = [max(item.bottom for item in row) for row in rows]
    gaps = [max(0.0, tops[i] - bottoms[i - 1]) for i in range(1, len(rows))]
    height = median(line.height for line in lines)
    usual = median(gaps) if gaps else 0.0
    threshold = max(PARAGRAPH_GAP * usual, usual + PARAGRAPH_MIN_EXTRA * height)
    parts = [joined(rows[0])]
    for gap, row in zip(gaps, rows[1:], strict=True):
        parts.append("\n\n" if gap > threshold else "\n")
        parts.append(joined(row))
    return "".join(parts)
