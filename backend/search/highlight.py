"""`highlight`: a chunk's content with the question's matched words marked `<em>`.

Matching uses the search analyzer's rules, so what is marked is what the keyword leg
matched: a Latin-script word is marked when its NFKC case-folded form is a query term
("Ragflow's" marks "Ragflow" for the query "ragflow"); in a run of CJK characters, every
occurrence of a CJK query term (jieba's words of the question) is marked, longest first.
The content is HTML-escaped around the marks, so a client can render the highlight as
HTML without the chunk's own `<`/`&` being read as markup.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence

from backend.search.analyzer import CJK_RUNS, WORDS

OPEN, CLOSE = "<em>", "</em>"


def folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def cjk_spans(run: str, offset: int, terms: Sequence[str]) -> list[tuple[int, int]]:
    """Non-overlapping spans of `terms` in one CJK run, longest term first."""
    taken = [False] * len(run)
    spans = []
    normal = folded(run) if len(folded(run)) == len(run) else run
    for term in sorted(terms, key=len, reverse=True):
        start = normal.find(term)
        while start != -1:
            end = start + len(term)
            if not any(taken[start:end]):
                taken[start:end] = [True] * (end - start)
                spans.append((offset + start, offset + end))
            start = normal.find(term, start + 1)
    return spans


def matched_spans(content: str, query_terms: Sequence[str]) -> list[tuple[int, int]]:
    wanted = set(query_terms)
    cjk_terms = [term for term in wanted if CJK_RUNS.fullmatch(term)]
    spans: list[tuple[int, int]] = []
    position = 0
    for run in CJK_RUNS.finditer(content):
        spans += word_spans(content, position, run.start(), wanted)
        spans += cjk_spans(run.group(), run.start(), cjk_terms)
        position = run.end()
    spans += word_spans(content, position, len(content), wanted)
    return sorted(spans)


def word_spans(content: str, start: int, end: int, wanted: set[str]) -> list[tuple[int, int]]:
    return [
        match.span()
        for match in WORDS.finditer(content, start, end)
        if folded(match.group()) in wanted
    ]


def highlight(content: str, query_terms: Sequence[str]) -> str:
    parts = []
    position = 0
    for start, end in matched_spans(content, query_terms):
        parts.append(html.escape(content[position:start], quote=False))
        parts.append(OPEN + html.escape(content[start:end], quote=False) + CLOSE)
        position = end
    parts.append(html.escape(content[position:], quote=False))
    return "".join(parts)
