"""Maximum-length questions (8,192 characters, thousands of e5 tokens), for the tests and
the bench that show a question is cut to its model's window and that long questions do
not hold short ones up (tests/test_embedding_window.py, bench/bench_question_fairness.py).
"""

from __future__ import annotations

import random

QUESTION_MAX_CHARS = 8192
WORDS = (
    "lake",
    "river",
    "mountain",
    "forest",
    "water",
    "deep",
    "cold",
    "ancient",
    "basin",
    "shore",
    "island",
)


def long_question(seed: int = 0) -> str:
    """QUESTION_MAX_CHARS characters of numbered words (each a few e5 tokens, over 2,000
    tokens in all); another `seed` gives the same words in another order."""
    words = list(WORDS)
    if seed:
        random.Random(seed).shuffle(words)
    text = " ".join(words[n % len(words)] + str(n) for n in range(2000))
    return text[:QUESTION_MAX_CHARS]
