"""Question/answer files for the `qa` chunk method: each pair becomes one chunk.

Layouts read, as RAGFlow's Q&A method documents them:
- xlsx / csv: the question in the first column, its answer in the second, one pair a
  row, every sheet; a first row that names the columns ("Question", "Answer", "问题",
  "答案", ...) is skipped.
- txt: one pair a line, question and answer separated by a TAB; a line without a TAB
  continues the previous answer (multi-line answers).
- md: each heading is a question, the text under it its answer.
Rows that are not a pair are skipped and reported in the parse's warnings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from backend.knowledge.formats import DocumentFormat
from backend.knowledge.parsing.document import ParsedDocument, ParseFailure, QAPair
from backend.knowledge.parsing.tables import cell_text, csv_rows, sheet_rows
from backend.knowledge.parsing.text import markdown_sections, read_text

HEADER_WORDS = frozenset(
    {"question", "questions", "answer", "answers", "q", "a", "问题", "答案", "问", "答"}
)
QA_FORMATS = (DocumentFormat.CSV, DocumentFormat.XLSX, DocumentFormat.TXT, DocumentFormat.MD)
LAYOUT_HINT = (
    "put each question in the first column and its answer in the second (xlsx, csv), or "
    "one question TAB answer per line (txt)"
)


def pairs_from_rows(rows: Iterable[Sequence[Any]], skipped: list[int]) -> list[QAPair]:
    pairs: list[QAPair] = []
    first = True
    for number, raw in enumerate(rows, start=1):
        cells = [cell_text(value) for value in raw]
        if not any(cells):
            continue
        if first and {cell.casefold() for cell in cells[:2]} <= HEADER_WORDS:
            first = False
            continue
        first = False
        if len(cells) >= 2 and cells[0] and cells[1]:
            pairs.append(QAPair(cells[0], cells[1]))
        else:
            skipped.append(number)
    return pairs


def pairs_from_lines(text: str, skipped: list[int]) -> list[QAPair]:
    pairs: list[QAPair] = []
    for number, line in enumerate(text.split("\n"), start=1):
        question, tab, answer = line.partition("\t")
        if tab and question.strip() and answer.strip():
            pairs.append(QAPair(question.strip(), answer.strip()))
        elif line.strip() and pairs:
            last = pairs[-1]
            pairs[-1] = QAPair(last.question, f"{last.answer}\n{line.strip()}")
        elif line.strip():
            skipped.append(number)
    return pairs


def pairs_from_markdown(text: str) -> list[QAPair]:
    pairs: list[QAPair] = []
    question = None
    for section in markdown_sections(text):
        if section.heading:
            question = section.text.lstrip("#").strip()
        elif question and section.text.strip():
            pairs.append(QAPair(question, section.text.strip()))
            question = None
    return pairs


def parse_qa(path: Path, fmt: DocumentFormat) -> ParsedDocument:
    """The question/answer pairs of a `qa` file; ParseFailure when the format holds no
    pairs Sluice can read, or no pair was found."""
    skipped: list[int] = []
    if fmt is DocumentFormat.CSV:
        pairs = pairs_from_rows(csv_rows(path), skipped)
    elif fmt is DocumentFormat.XLSX:
        pairs = []
        for _title, rows in sheet_rows(path):
            pairs.extend(pairs_from_rows(rows, skipped))
    elif fmt is DocumentFormat.TXT:
        pairs = pairs_from_lines(read_text(path), skipped)
    elif fmt is DocumentFormat.MD:
        pairs = pairs_from_markdown(read_text(path))
    else:
        raise ParseFailure(
            f"The 'qa' chunk method reads question/answer pairs from "
            f"{', '.join(f.value for f in QA_FORMATS)} files, not {fmt.value}: choose "
            "another chunk method for this document"
        )
    if not pairs:
        raise ParseFailure(f"No question/answer pairs found: {LAYOUT_HINT}")
    warnings = ()
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
        warnings = (f"{len(skipped)} rows or lines were not question/answer pairs: {shown}",)
    return ParsedDocument(qa_pairs=tuple(pairs), warnings=warnings)
