"""Where text may be cut: at the dataset's delimiters, then sentence ends, then words.

The chunker (`chunking.py`) packs the pieces made here into chunks of at most a token
budget. Pieces keep every character of the text (a delimiter stays at the end of the
piece it closes), so chunks joined give the text back. Cuts, in the order tried:

1. the dataset's `delimiter` (RAGFlow's syntax: each character is a delimiter, a run
   in backticks is one multi-character delimiter, e.g. "\\n!?;" plus full-width CJK
   punctuation, or "`##`"; a typed backslash-n or backslash-t means a newline or tab);
2. for a piece still over the budget, sentence ends: . ! ? ; or an ellipsis followed
   by whitespace (so "3.14" and "e.g.x" stay whole), CJK full stops and the like
   anywhere, and line breaks;
3. for a sentence still over it, word boundaries: whitespace between words of scripts
   that use it, and jieba's words inside runs of Chinese or Japanese (the search
   analyzer's own segmenter, so a chunk never ends inside a word the index knows);
4. only a single "word" longer than the budget (a pasted hash or blob, a long Thai run)
   is cut by tokens, at a character boundary.
"""

from __future__ import annotations

from collections.abc import Iterator

import regex

from backend.providers.tokens import encoding
from backend.search.analyzer import segmenter

ESCAPES = {"\\n": "\n", "\\t": "\t", "\\r": "\r"}
QUOTED = regex.compile(r"`([^`]+)`")
# Sentence-ending punctuation, then closing quotes/brackets: Latin forms only before
# whitespace, CJK full-width forms (which take no space after them) anywhere.
CLOSERS = r"[\"'\u201d\u2019\u300d\u300f)\]\uff09]*"
SENTENCE_END = regex.compile(
    rf"[.!?;\u2026]+{CLOSERS}(?:\s+|$)|[\u3002\uff01\uff1f\uff1b]+{CLOSERS}\s*|\n+"
)
CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\u30fc"
WORD_UNITS = regex.compile(rf"(?P<cjk>[{CJK}]+)|[^\s{CJK}]+\s*|\s+")


def token_count(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def token_counts(texts: list[str]) -> list[int]:
    encode = encoding().encode_ordinary
    return [len(encode(text)) for text in texts]


def delimiter_pattern(delimiter: str | None) -> regex.Pattern[str] | None:
    """A pattern matching any of the delimiters `delimiter` names (longest first), or
    None when it names none."""
    if not delimiter:
        return None
    for escape, char in ESCAPES.items():
        delimiter = delimiter.replace(escape, char)
    names: list[str] = []
    rest = 0
    for match in QUOTED.finditer(delimiter):
        names.extend(delimiter[rest : match.start()])
        names.append(match.group(1))
        rest = match.end()
    names.extend(delimiter[rest:])
    unique = sorted(set(names), key=len, reverse=True)
    return regex.compile("|".join(regex.escape(name) for name in unique)) if unique else None


def cut_after(text: str, pattern: regex.Pattern[str] | None) -> list[str]:
    """`text` cut after each match of `pattern` (the match stays with the piece before
    it); a run of delimiters closes one piece rather than making empty ones."""
    if pattern is None:
        return [text] if text else []
    pieces: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        end = match.end()
        if end == start and pieces:
            continue
        if match.start() == start and pieces:  # delimiters right after the last cut
            pieces[-1] += text[start:end]
        elif end > start:
            pieces.append(text[start:end])
        start = end
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def sentences(text: str) -> list[str]:
    return cut_after(text, SENTENCE_END)


def words(text: str) -> list[str]:
    """`text` as word units that concatenate back to it: a word of a spaced script with
    the whitespace after it, or one jieba word of a CJK run."""
    units: list[str] = []
    for match in WORD_UNITS.finditer(text):
        run = match.group("cjk")
        if run is None:
            units.append(match.group())
        else:
            units.extend(segmenter().cut(run, HMM=False))
    return units


def hard_cut(text: str, budget: int) -> list[str]:
    """`text` in pieces of at most `budget` tokens each, cut at character boundaries
    (only for a single word longer than the budget)."""
    tokens = encoding().encode_ordinary(text)
    _, offsets = encoding().decode_with_offsets(tokens)
    pieces: list[str] = []
    start = 0
    for index in range(budget, len(tokens), budget):
        end = offsets[index]
        while end > start + 1 and token_count(text[start:end]) > budget:
            end -= 1
        if end > start:
            pieces.append(text[start:end])
            start = end
    if start < len(text):
        pieces.extend(
            hard_cut(text[start:], budget) if token_count(text[start:]) > budget else [text[start:]]
        )
    return pieces


def fit(text: str, budget: int) -> Iterator[tuple[str, int]]:
    """(piece, tokens) covering `text`, every piece at most `budget` tokens, cut at the
    coarsest boundary that gets there: sentence ends, then words, then tokens."""
    for sentence, tokens in zip_counts(sentences(text)):
        if tokens <= budget:
            yield sentence, tokens
            continue
        for word, word_tokens in zip_counts(words(sentence)):
            if word_tokens <= budget:
                yield word, word_tokens
            else:
                yield from zip_counts(hard_cut(word, budget))


def zip_counts(texts: list[str]) -> Iterator[tuple[str, int]]:
    return zip(texts, token_counts(texts), strict=True)
