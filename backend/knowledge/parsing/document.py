"""What a parser hands on: a document's text as ordered sections, or its Q/A pairs.

A parser knows the document's structure and nothing about chunk sizes; the chunker
(`backend/knowledge/chunking.py`) knows token budgets and nothing about file formats. A
section is a stretch of text that belongs together (a page, a paragraph, a slide, a
heading): chunks may merge sections, but never cut one mid-word, and carry their
sections' positions (page or slide numbers) along.

Everything here is plain data that pickles, so parsing can run in a child process
(`runner.py`) and send its result back.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ParseFailure(Exception):
    """The document cannot be parsed; `reason` is written for the user who uploaded it
    (it ends up in the document's `progress_msg`), e.g. "the PDF is password-protected:
    upload it without a password"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self) -> tuple:
        return (type(self), (self.reason,))


@dataclass(frozen=True, slots=True)
class Section:
    """A stretch of a document's text. `page` is the 1-based page (PDF) or slide (PPTX)
    number it comes from, None where the format has no pages; `heading` marks a title or
    heading, where the `manual` chunk method starts a new chunk."""

    text: str
    page: int | None = None
    heading: bool = False


@dataclass(frozen=True, slots=True)
class QAPair:
    """One question and its answer, from a `qa` file (or an FAQ import)."""

    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A parsed document: its `sections` in reading order (empty for a Q/A file, whose
    `qa_pairs` are its content). `page_count` is the number of pages or slides, None
    where the format has none."""

    sections: tuple[Section, ...] = ()
    qa_pairs: tuple[QAPair, ...] = ()
    page_count: int | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def char_count(self) -> int:
        """Characters of parsed text (QAnything's `content_length`)."""
        if self.qa_pairs:
            return sum(len(pair.question) + len(pair.answer) for pair in self.qa_pairs)
        return sum(len(section.text) for section in self.sections)

    @property
    def text(self) -> str:
        """All the text, sections joined by newlines (for the `one` chunk method)."""
        return "\n".join(section.text for section in self.sections)


def require_text(sections: list[Section], what: str) -> ParsedDocument:
    """`sections` with blank ones dropped, as a ParsedDocument; ParseFailure when nothing
    is left (an empty file, or one holding only whitespace)."""
    kept = tuple(section for section in sections if section.text.strip())
    if not kept:
        raise ParseFailure(f"{what} contains no text: nothing to index")
    return ParsedDocument(sections=kept)
