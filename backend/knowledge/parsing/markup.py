"""HTML: the visible text, with block structure kept and headings as section breaks.

selectolax (the Lexbor engine, a full HTML5 parser in C) reads the page as a browser
would, broken markup included. Scripts, styles, templates and other invisible elements
are dropped. Block elements and <br> end a line; <h1>..<h6> become sections of their own
(the `manual` chunk method starts a chunk at each). Runs of HTML whitespace collapse to
one space as a browser shows them, except in preformatted text (<pre>, and a <code>
spanning lines), which keeps its line breaks and indentation: a C listing stays a
listing. Tables are read row by row as `header: value` lines, each row a section, as
Word tables and spreadsheets are (tables.py). The page's <title> leads as a heading.

Marking blocks is done by inserting private-use characters around them and taking the
text in one pass inside the library, so a deeply nested page costs no Python recursion.
Tables and preformatted text are set aside first (innermost first, so a table in a
table is one cell of the outer one), each replaced by a numbered marker that becomes
its sections again when the page's sections are assembled.
"""

from __future__ import annotations

from pathlib import Path

import regex
from selectolax.lexbor import LexborHTMLParser, LexborNode

from backend.knowledge.parsing.document import ParsedDocument, Section, require_text
from backend.knowledge.parsing.tables import table_sections
from backend.knowledge.parsing.text import read_text

INVISIBLE = [
    "script", "style", "noscript", "template", "svg", "math", "iframe", "object",
    "embed", "canvas", "head", "meta", "link",
]  # fmt: skip
BLOCKS = (
    "address,article,aside,blockquote,br,dd,details,dialog,div,dl,dt,fieldset,figcaption,"
    "figure,footer,form,header,hr,li,main,nav,ol,p,pre,section,summary,table,tr,td,th,ul,"
    "caption,tbody,thead,tfoot,option"
)
HEADINGS = "h1,h2,h3,h4,h5,h6"
LINE_BREAK = "\ue000"
HEADING_START = "\ue001"
HEADING_END = "\ue002"
SET_ASIDE_START = "\ue003"
SET_ASIDE_END = "\ue004"
HTML_SPACE = regex.compile(r"[ \t\n\r\f]+")
BLANK_LINES = regex.compile(r" ?\ue000[\ue000 ]*")
MARKERS = regex.compile(r"[\ue000-\ue002]")
SET_ASIDE = regex.compile(r"\ue003(\d+)\ue004")
# The marker characters as the page itself may spell them (raw, or as character
# references): removed before parsing, so only the markers set here mean anything.
LOOKALIKE_MARKERS = regex.compile(r"[\ue000-\ue004]|&#(?:[xX]0*[eE]00[0-4]|0*5734[4-8]);?")
PREFORMATTED = "pre"


def cell_text(cell: LexborNode, set_aside: list[list[Section]]) -> str:
    """A table cell on one line: its blocks and line breaks become spaces."""
    text = restored(cell.text(deep=True, separator=""), set_aside, " ")
    return HTML_SPACE.sub(" ", MARKERS.sub(" ", text)).strip()


def table_rows(table: LexborNode, set_aside: list[list[Section]]) -> list[list[str]]:
    """The table's rows as cell texts (tables inside it are already set aside)."""
    return [[cell_text(cell, set_aside) for cell in row.css("td, th")] for row in table.css("tr")]


def preformatted_text(node: LexborNode, set_aside: list[list[Section]]) -> str:
    """The text as written: line breaks and indentation kept, trailing blanks and
    leading or trailing empty lines dropped."""
    text = restored(node.text(deep=True, separator=""), set_aside, "\n")
    text = MARKERS.sub(lambda found: "\n" if found[0] == LINE_BREAK else "", text)
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


def restored(text: str, set_aside: list[list[Section]], joiner: str) -> str:
    """`text` with the markers of what was set aside inside it as their text."""
    return SET_ASIDE.sub(
        lambda found: joiner.join(section.text for section in aside(set_aside, found)), text
    )


def aside(set_aside: list[list[Section]], found: regex.Match) -> list[Section]:
    """The sections a marker stands for (none for look-alike characters in the page)."""
    number = int(found[1])
    return set_aside[number] if number < len(set_aside) else []


def set_aside_structures(page: LexborHTMLParser) -> list[list[Section]]:
    """Replace tables and preformatted text by numbered markers; their sections, by number."""
    set_aside: list[list[Section]] = []

    def replace(node: LexborNode, sections: list[Section]) -> None:
        marker = f"{LINE_BREAK}{SET_ASIDE_START}{len(set_aside)}{SET_ASIDE_END}{LINE_BREAK}"
        node.replace_with(marker)
        set_aside.append(sections)

    for node in reversed(page.css(f"table, {PREFORMATTED}")):
        if node.tag == "table":
            replace(node, table_sections(table_rows(node, set_aside)))
        else:
            replace(node, [Section(preformatted_text(node, set_aside))])
    for node in page.css("code"):
        if "\n" in node.text(deep=True, separator="").strip():
            replace(node, [Section(preformatted_text(node, set_aside))])
    return set_aside


def visible_text(page: LexborHTMLParser) -> tuple[str, list[list[Section]]]:
    """The page's visible text with the markers above in place of its structure, and
    the sections of what was set aside."""
    for node in page.css(BLOCKS):
        node.insert_before(LINE_BREAK)
        node.insert_after(LINE_BREAK)
    for node in page.css(HEADINGS):
        node.insert_before(HEADING_START)
        node.insert_after(HEADING_END)
    set_aside = set_aside_structures(page)
    root = page.body or page.root
    return ("" if root is None else root.text(deep=True, separator="")), set_aside


def body_sections(body: str, set_aside: list[list[Section]]) -> list[Section]:
    """A stretch between headings: its lines as one section, cut where a table or
    preformatted text was, which come back as their own sections."""
    sections: list[Section] = []
    lines: list[str] = []
    for raw in body.split("\n"):
        line = raw.strip()
        found = SET_ASIDE.fullmatch(line)
        if found is None:
            if line:
                lines.append(line)
            continue
        if lines:
            sections.append(Section("\n".join(lines)))
            lines = []
        sections.extend(aside(set_aside, found))
    if lines:
        sections.append(Section("\n".join(lines)))
    return sections


def html_sections(html: str) -> list[Section]:
    page = LexborHTMLParser(LOOKALIKE_MARKERS.sub("", html))
    title_node = page.css_first("head > title") or page.css_first("title")
    title = HTML_SPACE.sub(" ", title_node.text()).strip() if title_node else ""
    page.strip_tags(INVISIBLE)
    text, set_aside = visible_text(page)
    text = HTML_SPACE.sub(" ", text)
    text = BLANK_LINES.sub("\n", text)
    sections = [Section(title, heading=True)] if title else []
    for part in text.split(HEADING_START):
        heading, marker, body = part.partition(HEADING_END)
        if not marker:
            heading, body = "", part
        heading = restored(heading, set_aside, " ").replace("\n", " ").strip()
        if heading and heading != title:
            sections.append(Section(heading, heading=True))
        sections.extend(body_sections(body, set_aside))
    return sections


def parse_html(path: Path) -> ParsedDocument:
    return require_text(html_sections(read_text(path)), "The page")
