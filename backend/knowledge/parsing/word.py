"""Word documents (docx): paragraphs and tables in reading order, read by python-docx.

Headings (the built-in "Title" and "Heading N" styles, as Word's navigation pane shows
them) are sections of their own; tables are read row by row as `header: value` lines,
like spreadsheets. The package is checked for ZIP/XML bombs and for encryption first
(`packages.py`). Word has no fixed pages, so sections carry no page numbers.
"""

from __future__ import annotations

from pathlib import Path

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from backend.knowledge.parsing.document import ParsedDocument, Section, require_text
from backend.knowledge.parsing.packages import check_package
from backend.knowledge.parsing.tables import table_sections

HEADING_STYLES = ("Heading", "Title")


def is_heading(paragraph: Paragraph) -> bool:
    try:
        style = paragraph.style
    except (KeyError, ValueError):  # a style id the document does not define
        return False
    name = (style.name or "") if style is not None else ""
    return name.startswith(HEADING_STYLES)


def table_rows(table: Table) -> list[list[str]]:
    """The table's rows as cell texts; a merged cell (repeated by python-docx across the
    cells it spans) is read once."""
    rows = []
    for row in table.rows:
        seen: set[int] = set()
        cells = []
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(cell.text)
        rows.append(cells)
    return rows


def parse_docx(path: Path) -> ParsedDocument:
    check_package(path, "The Word document")
    document = docx.Document(str(path))
    sections: list[Section] = []
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text
            if text.strip():
                sections.append(Section(text.strip(), heading=is_heading(block)))
        elif isinstance(block, Table):
            sections.extend(table_sections(table_rows(block)))
    return require_text(sections, "The Word document")
