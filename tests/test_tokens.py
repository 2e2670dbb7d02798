"""Token counting: tiktoken cl100k_base, the offline fallback, OpenAI chat accounting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tiktoken

from backend.providers import tokens
from backend.providers.base import ChatMessage


@pytest.fixture
def fresh_encoding() -> Iterator[None]:
    tokens.encoding.cache_clear()
    yield
    tokens.encoding.cache_clear()


def test_counts_grow_with_text() -> None:
    assert tokens.count_tokens("") == 0
    short = tokens.count_tokens("hello world")
    assert short > 0
    assert tokens.count_tokens("hello world " * 50) > 10 * short


def test_special_token_text_is_counted_not_rejected() -> None:
    assert tokens.count_tokens("<|endoftext|>") > 1


def test_offline_fallback_when_download_fails(
    monkeypatch: pytest.MonkeyPatch, fresh_encoding: None
) -> None:
    real = tiktoken.get_encoding
    asked: list[str] = []

    def offline_only(name: str) -> tiktoken.Encoding:
        asked.append(name)
        if name == tokens.ENCODING:
            raise ConnectionError("no network")
        return real(name)

    monkeypatch.setattr(tiktoken, "get_encoding", offline_only)
    encoding = tokens.encoding()
    assert asked == [tokens.ENCODING, tokens.OFFLINE_ENCODING]
    assert encoding.name == tokens.OFFLINE_ENCODING
    # Same vocabulary as the online encoding: "hello world" is two cl100k tokens.
    assert tokens.count_tokens("hello world") == len(
        real(tokens.OFFLINE_ENCODING).encode("hello world")
    )
    tokens.count_tokens("again")
    assert len(asked) == 2, "the encoding is cached after the first lookup"


def test_message_tokens_follow_openai_accounting() -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "hello world")]
    expected = tokens.TOKENS_PER_REPLY + sum(
        tokens.TOKENS_PER_MESSAGE + tokens.count_tokens(m.role) + tokens.count_tokens(m.content)
        for m in messages
    )
    assert tokens.count_message_tokens(messages) == expected
    assert tokens.count_message_tokens([]) == tokens.TOKENS_PER_REPLY


def test_images_count_at_a_fixed_estimate() -> None:
    def with_image(detail: str | None) -> ChatMessage:
        image = {"url": "data:image/png;base64,AAAA"} | ({"detail": detail} if detail else {})
        return ChatMessage(
            "user",
            [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": image}],
        )

    text_only = tokens.count_message_tokens([ChatMessage("user", "what is this")])
    assert tokens.count_message_tokens([with_image(None)]) == text_only + tokens.IMAGE_TOKENS
    assert tokens.count_message_tokens([with_image("high")]) == text_only + tokens.IMAGE_TOKENS
    assert (
        tokens.count_message_tokens([with_image("low")])
        == text_only + tokens.IMAGE_TOKENS_LOW_DETAIL
    )
