"""Citations inserted after generation (backend/search/citations.py): where sentences
end, which chunks a sentence cites, and where the `[ID:n]` goes."""

from __future__ import annotations

import numpy as np
import pytest

from backend.search import citations
from backend.services.task_outcomes import Answer
from backend.settings import Settings
from schemas.events import Reference, ReferenceChunk
from workers.jobs.citing import with_citations

pytestmark = pytest.mark.sqlite_only


def test_sentences_end_at_punctuation_line_breaks_and_cjk_marks_not_in_code() -> None:
    answer = (
        "The gizmo is painted ultramarine. It weighs seven kilograms!\n"
        "```\nx = 1. y = 2.\nprint(x)\n```\n"
        "蓝色的机器很重。它有七公斤重。 Ok."
    )
    found = citations.sentences(answer)
    assert [s.text for s in found] == [
        "The gizmo is painted ultramarine.",
        "It weighs seven kilograms!",
        "```\nx = 1. y = 2.\nprint(x)\n```",
        "蓝色的机器很重。",
        "它有七公斤重。",
    ]
    # "Ok." has too few terms to cite; each span ends right after its punctuation.
    assert all(answer[s.start : s.end].strip() == s.text for s in found)


def test_a_sentence_cites_the_chunks_near_its_best_above_the_lowered_threshold() -> None:
    similarity = np.array(
        [
            [0.45, 0.449, 0.1],  # best 0.45: the second is within 1 % of it
            [0.2, 0.1, 0.05],  # below every threshold step
            [0.1, 0.1, 0.36],
        ]
    )
    # 0.63 and 0.504 cite nothing; at 0.403 the first sentence is cited, the third not.
    assert citations.chosen(similarity) == [[0, 1], [], []]
    assert citations.chosen(np.array([[0.29, 0.1]])) == [[]]
    assert citations.chosen(np.array([[0.9, 0.9, 0.9, 0.9, 0.9]])) == [[0, 1, 2, 3]]


def test_citations_go_after_each_cited_sentence() -> None:
    answer = "The gizmo is painted ultramarine. Herons fish at dawn.\nNothing else here"
    found = citations.sentences(answer)
    cited = citations.with_citations(answer, found, [[1], [], [0, 2]])
    assert cited == (
        "The gizmo is painted ultramarine. [ID:1] Herons fish at dawn.\n"
        "Nothing else here [ID:0] [ID:2]"
    )
    assert citations.has_citations(cited) and not citations.has_citations(answer)


def test_term_overlap_counts_the_sentence_terms_a_chunk_holds() -> None:
    overlap = citations.term_overlap(
        "ultramarine gizmo weighs", ["The gizmo is ultramarine", "Lakes freeze", ""]
    )
    assert overlap.tolist() == pytest.approx([2 / 3, 0.0, 0.0])


def chunk(content: str) -> ReferenceChunk:
    return ReferenceChunk(
        id="c" * 32, content=content, document_id="d" * 32, document_name="d.txt",
        dataset_id="e" * 32, similarity=0.9, vector_similarity=0.9, term_similarity=1.0,
    )  # fmt: skip


async def test_nothing_is_inserted_when_the_setting_or_the_assistant_says_no(
    settings: Settings,
) -> None:
    """Each of these returns before any embedding call (none is configured here)."""
    reference = Reference(total=1, chunks=[chunk("The gizmo is painted ultramarine.")])
    answer = Answer("The gizmo is painted ultramarine today.", 10, 5)
    off = settings.model_copy(update={"auto_citations": False})
    assert await with_citations(answer, reference, {"show_quote": True}, off) is answer
    assert await with_citations(answer, reference, {"show_quote": False}, settings) is answer
    assert await with_citations(answer, Reference(), {"show_quote": True}, settings) is answer
    cited = Answer("The gizmo is painted ultramarine [ID:0].", 10, 5)
    assert await with_citations(cited, reference, {"show_quote": True}, settings) is cited
