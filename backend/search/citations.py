"""Citations inserted after generation, for models that do not write `[ID:n]` themselves.

Small models (the bundled SmolLM2 among them) answer from the chunks they were given
but almost never cite them, so the final reference could not say which chunk backs
which sentence. RAGFlow meets this by matching the answer to the chunks afterwards;
this does the same, in its own way: the answer is cut into sentences, each sentence is
compared with every chunk given to the model by a hybrid of vector similarity (the
sentence embedded with the datasets' model against the chunk's stored vector,
calibrated to the model's unrelated-text cosine as retrieval reports it) and term
overlap (the share of the sentence's terms found in the chunk, with the search
analyzer), and a sentence gets ` [ID:n]` for the chunks that pass the threshold and
come within a hair of its best one (at most `MAX_PER_SENTENCE`). The threshold starts
strict and is lowered step by step until some sentence is cited, never below
`THRESHOLD_FLOOR`: an answer that says nothing the chunks say gets no citation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backend.search.analyzer import query_terms

CITATION = re.compile(r"\[ID:\d+\]")
# A sentence ends at . ! ? ; (ASCII followed by a space or the end) or their CJK forms,
# or at a line break.
SENTENCE_END = re.compile(r"(?:[.!?;](?=\s|$)|[\u3002\uff01\uff1f\uff1b]|\n)+")
CODE_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
MIN_SENTENCE_TERMS = 3
MAX_SENTENCES = 64
VECTOR_WEIGHT = 0.7
START_THRESHOLD = 0.63
THRESHOLD_STEP = 0.8
THRESHOLD_FLOOR = 0.3
# A sentence cites every chunk scoring at least this share of its best one.
NEAR_BEST = 0.99
MAX_PER_SENTENCE = 4


@dataclass(frozen=True)
class Sentence:
    """`answer[start:end]` is the sentence; a citation goes at `end` (after its
    punctuation, before the whitespace that follows)."""

    start: int
    end: int
    text: str


def sentences(answer: str) -> list[Sentence]:
    """The answer's sentences worth citing, in order; code blocks are never cut."""
    fenced = [(m.start(), m.end()) for m in CODE_FENCE.finditer(answer)]
    found: list[Sentence] = []
    start = 0
    for end_mark in SENTENCE_END.finditer(answer):
        if any(a <= end_mark.start() < b for a, b in fenced):
            continue
        end = end_mark.end()
        while end > start and answer[end - 1].isspace():
            end -= 1
        found.append(Sentence(start, end, answer[start:end].strip()))
        start = end_mark.end()
    if answer[start:].strip():
        end = len(answer.rstrip())
        found.append(Sentence(start, end, answer[start:end].strip()))
    worth = [s for s in found if len(query_terms(s.text)) >= MIN_SENTENCE_TERMS]
    return worth[:MAX_SENTENCES]


def term_overlap(sentence: str, chunks: Sequence[str]) -> np.ndarray:
    """For each chunk, the share of the sentence's distinct terms it contains."""
    terms = query_terms(sentence)
    if not terms:
        return np.zeros(len(chunks))
    return np.array([len(set(terms) & set(query_terms(c))) / len(terms) for c in chunks])


def chosen(similarity: np.ndarray) -> list[list[int]]:
    """Per sentence (row), the chunks (columns) it cites: above the highest threshold of
    the descending steps at which any sentence is cited, and near its own best."""
    threshold = START_THRESHOLD
    while threshold >= THRESHOLD_FLOOR:
        picks = []
        for row in similarity:
            best = float(row.max()) if row.size else 0.0
            bar = max(threshold, best * NEAR_BEST)
            ranked = [int(i) for i in np.argsort(-row, kind="stable") if row[i] >= bar]
            picks.append(ranked[:MAX_PER_SENTENCE])
        if any(picks):
            return picks
        threshold *= THRESHOLD_STEP
    return [[] for _ in similarity]


def hybrid_similarity(
    vector_similarity: np.ndarray, sentence_texts: Sequence[str], chunk_texts: Sequence[str]
) -> np.ndarray:
    """Rows are sentences, columns chunks: weighted calibrated cosine plus term overlap."""
    terms = np.stack([term_overlap(text, chunk_texts) for text in sentence_texts])
    return VECTOR_WEIGHT * vector_similarity + (1.0 - VECTOR_WEIGHT) * terms


def with_citations(answer: str, cited: Sequence[Sentence], picks: Sequence[list[int]]) -> str:
    """The answer with ` [ID:n]` after each cited sentence."""
    pieces, at = [], 0
    for sentence, chunks in zip(cited, picks, strict=True):
        if not chunks:
            continue
        pieces.append(answer[at : sentence.end])
        pieces.append("".join(f" [ID:{n}]" for n in sorted(chunks)))
        at = sentence.end
    pieces.append(answer[at:])
    return "".join(pieces)


def has_citations(answer: str) -> bool:
    return CITATION.search(answer) is not None
