"""HTML: the visible text, with block structure kept and headings as section breaks.

selectolax (the Lexbor engine, a full HTML5 parser in C) reads the page as a browser
would, broken markup included. Scripts, styles, templates and other invisible elements
are dropped. Block elements and <br> end a line; <h1>..<h6> become sections of their own
(the `manual` chunk method starts a chunk at each). Runs of HTML whitespace collapse to
one space as a browser shows them. The page's <title> leads as a heading.

Marking blocks is done by inserting private-use characters around them and taking the
text in one pass inside the library, so a deeply nested page costs no Python recursion.
"""

from __future__ import annotations

from pathlib import Path

import regex
from selectolax.lexbor import LexborHTMLParser

from backend.knowledge.parsing.document import ParsedDocument, Section, require_text
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
HTML_SPACE = regex.compile(r"[ \t\n\r\f]+")
BLANK_LINES = regex.compile(r" ?\ue000[\ue000 ]*")


def visible_text(page: LexborHTMLParser) -> str:
    """The page's visible text with the markers above in place of its structure."""
    for node in page.css(BLOCKS):
        node.insert_before(LINE_BREAK)
        node.insert_after(LINE_BREAK)
    for node in page.css(HEADINGS):
        node.insert_before(HEADING_START)
        node.insert_after(HEADING_END)
    root = page.body or page.root
    return "" if root is None else root.text(deep=True, separator="")


def html_sections(html: str) -> list[Section]:
    page = LexborHTMLParser(html)
    title_node = page.css_first("head > title") or page.css_first("title")
    title = HTML_SPACE.sub(" ", title_node.text()).strip() if title_node else ""
    page.strip_tags(INVISIBLE)
    text = HTML_SPACE.sub(" ", visible_text(page))
    text = BLANK_LINES.sub("\n", text)
    sections = [Section(title, heading=True)] if title else []
    for part in text.split(HEADING_START):
        heading, marker, body = part.partition(HEADING_END)
        if not marker:
            heading, body = "", part
        heading = heading.replace("\n", " ").strip()
        if heading and heading != title:
            sections.append(Section(heading, heading=True))
        body = "\n".join(line.strip() for line in body.split("\n") if line.strip())
        if body:
            sections.append(Section(body))
    return sections


def parse_html(path: Path) -> ParsedDocument:
    return require_text(html_sections(read_text(path)), "The page")
