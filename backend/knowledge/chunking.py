"""A parsed document to chunks: the searchable, embeddable units of a dataset.

Chunk methods (the dataset's or document's `chunk_method`, RAGFlow's names):
- `naive`: chunks of at most `chunk_token_num` tokens (cl100k_base, the project's
  tokenizer; 512 by default as RAGFlow's), cut only where `splitting.py` allows: at the
  dataset's delimiters first, never inside a word or a CJK word. Small sections (rows,
  paragraphs, lines) are packed together up to the budget; a heading that would end a
  chunk moves on to start the next one, with the text it heads.
- `manual`: as naive, but every heading starts a new chunk (sections by headings).
- `one`: the whole document, one chunk, whatever its size.
- `qa`: one chunk per question/answer pair, "Q: ...\\nA: ...", the question kept in
  `questions` so a search can match it alone.
Each chunk carries the pages (or slides) its text came from and its exact token count.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from backend.knowledge.parsing.document import ParsedDocument, Section
from backend.knowledge.splitting import cut_after, delimiter_pattern, fit, token_counts

DEFAULT_CHUNK_TOKENS = 512
DEFAULT_DELIMITER = "\n"
METHODS = ("naive", "manual", "one", "qa")


@dataclass(frozen=True, slots=True)
class Chunk:
    content: str
    token_count: int
    # 1-based pages (PDF) or slides (PPTX) the text came from, in order; empty where
    # the format has no pages.
    pages: tuple[int, ...] = ()
    questions: tuple[str, ...] = ()

    @property
    def positions(self) -> tuple[tuple[int, int, int, int, int], ...]:
        """RAGFlow's `positions` ([page, left, right, top, bottom] boxes); the text
        layer gives pages, not boxes, so the box is zeros."""
        return tuple((page, 0, 0, 0, 0) for page in self.pages)


@dataclass(frozen=True, slots=True)
class ChunkSettings:
    chunk_token_num: int = DEFAULT_CHUNK_TOKENS
    delimiter: str = DEFAULT_DELIMITER

    @classmethod
    def from_parser_config(cls, config: Mapping[str, Any] | None) -> ChunkSettings:
        """The settings a dataset's or document's `parser_config` names; missing or
        unusable values take the defaults."""
        config = config or {}
        tokens = config.get("chunk_token_num")
        delimiter = config.get("delimiter")
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
            tokens = DEFAULT_CHUNK_TOKENS
        if not isinstance(delimiter, str) or not delimiter:
            delimiter = DEFAULT_DELIMITER
        return cls(chunk_token_num=tokens, delimiter=delimiter)


@dataclass(frozen=True, slots=True)
class Piece:
    """A stretch of text no chunk boundary may fall inside; `opens` marks the first piece
    of its section."""

    text: str
    tokens: int
    page: int | None
    heading: bool
    opens: bool


def pieces(sections: Iterable[Section], settings: ChunkSettings) -> Iterator[Piece]:
    """The sections cut at the delimiters (then sentences, then words) into pieces of at
    most the budget. Each section ends with a newline, so sections never run together."""
    pattern = delimiter_pattern(settings.delimiter)
    budget = settings.chunk_token_num
    for section in sections:
        text = section.text if section.text.endswith("\n") else section.text + "\n"
        parts = cut_after(text, pattern)
        opens = True
        for part, tokens in zip(parts, token_counts(parts), strict=True):
            smalls = [(part, tokens)] if tokens <= budget else fit(part, budget)
            for small, small_tokens in smalls:
                yield Piece(small, small_tokens, section.page, section.heading, opens)
                opens = False


def pages_of(group: list[Piece]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(piece.page for piece in group if piece.page is not None))


def trailing_headings(group: list[Piece]) -> list[Piece]:
    count = 0
    while count < len(group) and group[-1 - count].heading:
        count += 1
    return group[len(group) - count :]


def packed(stream: Iterable[Piece], budget: int, break_at_headings: bool) -> Iterator[list[Piece]]:
    """Pieces grouped greedily into runs of at most `budget` counted tokens. With
    `break_at_headings` a heading closes the group before it (unless the group holds
    only headings: a chapter title right above a section title stays with it); headings
    that would end a group move to the next one when they fit there with what follows."""
    group: list[Piece] = []
    tokens = 0
    for piece in stream:
        heading_break = (
            break_at_headings
            and piece.heading
            and piece.opens
            and not all(member.heading for member in group)
        )
        if group and (heading_break or tokens + piece.tokens > budget):
            carried = [] if heading_break else trailing_headings(group)
            carried_tokens = sum(p.tokens for p in carried)
            if carried and len(carried) < len(group) and carried_tokens + piece.tokens <= budget:
                group = group[: len(group) - len(carried)]
            else:
                carried, carried_tokens = [], 0
            yield group
            group, tokens = carried, carried_tokens
        group.append(piece)
        tokens += piece.tokens
    if group:
        yield group


def exact_chunks(groups: Iterable[list[Piece]], budget: int) -> Iterator[Chunk]:
    """Chunks of the groups with exact token counts. Pieces were counted one by one; a
    joined text can tokenize differently at the seams, so a group whose exact count is
    over the budget is split in two (at a piece boundary) until it fits."""
    pending = list(groups)
    pending.reverse()
    while pending:
        group = pending.pop()
        content = "".join(piece.text for piece in group).strip()
        if not content:
            continue
        (tokens,) = token_counts([content])
        if tokens > budget and len(group) > 1:
            middle = len(group) // 2
            pending.extend((group[middle:], group[:middle]))
            continue
        yield Chunk(content, tokens, pages_of(group))


def naive_chunks(
    sections: Iterable[Section], settings: ChunkSettings, break_at_headings: bool = False
) -> list[Chunk]:
    budget = settings.chunk_token_num
    groups = packed(pieces(sections, settings), budget, break_at_headings)
    return list(exact_chunks(groups, budget))


def whole_document(parsed: ParsedDocument) -> list[Chunk]:
    content = parsed.text.strip()
    if not content:
        return []
    pages = tuple(dict.fromkeys(s.page for s in parsed.sections if s.page is not None))
    return [Chunk(content, token_counts([content])[0], pages)]


def qa_chunks(parsed: ParsedDocument) -> list[Chunk]:
    contents = [f"Q: {pair.question}\nA: {pair.answer}" for pair in parsed.qa_pairs]
    return [
        Chunk(content, tokens, questions=(pair.question,))
        for pair, content, tokens in zip(
            parsed.qa_pairs, contents, token_counts(contents), strict=True
        )
    ]


def chunk_document(
    parsed: ParsedDocument,
    chunk_method: str = "naive",
    parser_config: Mapping[str, Any] | None = None,
) -> list[Chunk]:
    """The chunks of `parsed` by `chunk_method`, under the dataset's or document's
    `parser_config` (`chunk_token_num`, `delimiter`). A Q/A parse gives one chunk per
    pair whatever the method says (the pairs are its only content)."""
    if chunk_method not in METHODS:
        raise ValueError(f"unknown chunk method {chunk_method!r}: one of {', '.join(METHODS)}")
    if parsed.qa_pairs:
        return qa_chunks(parsed)
    if chunk_method == "one":
        return whole_document(parsed)
    settings = ChunkSettings.from_parser_config(parser_config)
    return naive_chunks(parsed.sections, settings, break_at_headings=chunk_method == "manual")
