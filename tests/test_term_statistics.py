"""The rule choosing which question terms the keyword leg matches (both stores)."""

from __future__ import annotations

from backend.search.term_statistics import informative_terms

COUNTS = {"the": 90, "of": 70, "zorblat": 3, "gizmo": 50}


def test_common_terms_are_dropped_beside_rarer_ones() -> None:
    assert informative_terms(["the", "zorblat", "of", "gizmo"], COUNTS, 100) == [
        "zorblat",
        "gizmo",  # exactly half the chunks: still informative
    ]


def test_unknown_terms_match_nothing_and_silence_the_common_ones() -> None:
    assert informative_terms(["the", "football"], COUNTS, 100) == []
    assert informative_terms(["football", "zorblat"], COUNTS, 100) == ["zorblat"]


def test_a_question_of_common_words_alone_still_matches_them() -> None:
    assert informative_terms(["the", "of", "the"], COUNTS, 100) == ["the", "of"]
    assert informative_terms(["football"], COUNTS, 100) == ["football"]  # one term: as is
    assert informative_terms(["", "the"], COUNTS, 100) == ["the"]
    assert informative_terms([], COUNTS, 100) == []
