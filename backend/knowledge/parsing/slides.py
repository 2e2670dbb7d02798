"""PowerPoint decks (pptx): each slide's text with its slide number, read by python-pptx.

A slide's title is a heading section; its other shapes follow in reading order (top to
bottom, then left to right, as RAGFlow orders them), grouped shapes included, tables as
`header: value` lines. Every section carries its slide number as its page, so chunks
point back at slides. The package is checked for ZIP/XML bombs and encryption first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.shapes.base import BaseShape

from backend.knowledge.parsing.document import ParsedDocument, ParseFailure, Section
from backend.knowledge.parsing.packages import check_package
from backend.knowledge.parsing.tables import rows_as_lines


def reading_order(shapes: Iterable[BaseShape]) -> list[BaseShape]:
    return sorted(shapes, key=lambda shape: (shape.top or 0, shape.left or 0))


def shape_texts(shapes: Iterable[BaseShape]) -> Iterator[str]:
    """Texts of `shapes` and of the shapes inside groups, without recursion."""
    stack = [iter(reading_order(shapes))]
    while stack:
        shape = next(stack[-1], None)
        if shape is None:
            stack.pop()
        elif shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            stack.append(iter(reading_order(shape.shapes)))
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
            yield "\n".join(rows_as_lines(rows))
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            yield shape.text_frame.text


def parse_pptx(path: Path) -> ParsedDocument:
    check_package(path, "The PowerPoint deck")
    deck = pptx.Presentation(str(path))
    sections: list[Section] = []
    slides = 0
    for number, slide in enumerate(deck.slides, start=1):
        slides = number
        title = slide.shapes.title
        if title is not None and title.has_text_frame and title.text_frame.text.strip():
            sections.append(Section(title.text_frame.text.strip(), page=number, heading=True))
        others = [shape for shape in slide.shapes if title is None or shape != title]
        body = "\n".join(text.strip() for text in shape_texts(others) if text.strip())
        if body:
            sections.append(Section(body, page=number))
    if not sections:
        raise ParseFailure("The PowerPoint deck contains no text: nothing to index")
    return ParsedDocument(sections=tuple(sections), page_count=slides)
