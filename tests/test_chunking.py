# ruff: noqa: RUF001 (full-width CJK punctuation is the point of these texts)
"""Chunking: the token budget holds, cuts fall at delimiters, then sentence ends, then
word boundaries (jieba's words for Chinese), and chunks carry their pages."""

from __future__ import annotations

import random

import pytest

from backend.knowledge.chunking import ChunkSettings, chunk_document
from backend.knowledge.parsing import ParsedDocument, QAPair, Section
from backend.providers.tokens import count_tokens
from backend.search.analyzer import segmenter

# Library code: nothing here touches the SQL database.
pytestmark = pytest.mark.sqlite_only

PHRASE = (
    "retrieval augmented generation splits documents into chunks that fit the embedding "
    "model and the prompt while keeping sentences and words whole for readers and search"
)
WORDS = PHRASE.split()
CHINESE = (
    "知识库把上传的文档解析成文本再按照词元数量切分成片段然后用向量模型编码并写入检索索引"
    "用户提问时系统先分词再结合关键词与语义相似度找出最相关的片段交给大语言模型生成回答"
)


def document(*texts: str, pages: list[int | None] | None = None) -> ParsedDocument:
    pages = pages or [None] * len(texts)
    return ParsedDocument(
        sections=tuple(Section(t, page=p) for t, p in zip(texts, pages, strict=True))
    )


def prose(words: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def assert_within_budget(chunks, budget: int) -> None:
    assert chunks
    for chunk in chunks:
        assert chunk.token_count == count_tokens(chunk.content)
        assert 0 < chunk.token_count <= budget, chunk


def test_token_budget_respected_and_counts_exact() -> None:
    paragraphs = [prose(40 + 30 * i, seed=i) + "." for i in range(12)]
    chunks = chunk_document(document("\n".join(paragraphs)), "naive", {"chunk_token_num": 64})
    assert_within_budget(chunks, 64)
    assert len(chunks) > 5


def test_small_lines_are_packed_up_to_the_budget() -> None:
    lines = [f"line {n} says {prose(5, seed=n)}" for n in range(100)]
    chunks = chunk_document(document("\n".join(lines)), "naive", {"chunk_token_num": 100})
    assert_within_budget(chunks, 100)
    # packed, not one chunk per line, and no line split across two chunks
    assert len(chunks) < 25
    assert [line for chunk in chunks for line in chunk.content.split("\n")] == lines


def test_no_latin_word_is_cut_even_without_any_delimiter() -> None:
    text = prose(2000)  # one line, no punctuation: only word boundaries are left
    chunks = chunk_document(document(text), "naive", {"chunk_token_num": 30})
    assert_within_budget(chunks, 30)
    assert " ".join(chunk.content for chunk in chunks).split() == text.split()


def test_no_chinese_word_is_cut() -> None:
    """A run of Chinese with no punctuation at all: cuts fall only between jieba words."""
    text = CHINESE * 6
    chunks = chunk_document(document(text), "naive", {"chunk_token_num": 24})
    assert_within_budget(chunks, 24)
    assert "".join(chunk.content for chunk in chunks) == text
    word_ends = set()
    offset = 0
    for word in segmenter().cut(text, HMM=False):
        offset += len(word)
        word_ends.add(offset)
    cut = 0
    for chunk in chunks:
        cut += len(chunk.content)
        assert cut in word_ends, f"chunk ends inside a word: ...{chunk.content[-4:]}"


def test_chinese_paragraphs_are_cut_at_sentence_ends_first() -> None:
    sentences = [CHINESE[i : i + 30] + "。" for i in range(0, len(CHINESE), 30)] * 3
    chunks = chunk_document(document("".join(sentences)), "naive", {"chunk_token_num": 80})
    assert_within_budget(chunks, 80)
    assert len(chunks) > 1
    assert all(chunk.content.endswith("。") for chunk in chunks)


def test_the_dataset_delimiters_are_honoured() -> None:
    sentences = [f"{prose(12, seed=n)}{'!?'[n % 2]}" for n in range(30)]
    text = "".join(sentences)  # no newline, no space after the marks
    chunks = chunk_document(document(text), "naive", {"chunk_token_num": 60, "delimiter": "!?"})
    assert_within_budget(chunks, 60)
    assert all(chunk.content[-1] in "!?" for chunk in chunks)
    assert "".join(chunk.content for chunk in chunks) == text


def test_backtick_delimiters_and_typed_escapes() -> None:
    text = "## ".join(prose(20, seed=n) for n in range(10))
    chunks = chunk_document(document(text), "naive", {"chunk_token_num": 50, "delimiter": "`##`"})
    assert all(chunk.content.endswith("##") for chunk in chunks[:-1])
    lines = "\n".join(prose(20, seed=n) for n in range(10))
    typed = chunk_document(document(lines), "naive", {"chunk_token_num": 50, "delimiter": "\\n"})
    assert [line for chunk in typed for line in chunk.content.split("\n")] == lines.split("\n")


def test_a_sentence_longer_than_the_budget_is_cut_at_sentence_ends_then_words() -> None:
    paragraph = " ".join(f"{prose(15, seed=n)}." for n in range(20))  # one line
    chunks = chunk_document(document(paragraph), "naive", {"chunk_token_num": 50})
    assert_within_budget(chunks, 50)
    assert all(chunk.content.endswith(".") for chunk in chunks)


def test_a_single_word_longer_than_the_budget_is_cut_by_tokens() -> None:
    blob = "x9" * 400
    chunks = chunk_document(document(f"hash {blob} end"), "naive", {"chunk_token_num": 40})
    assert_within_budget(chunks, 40)
    assert "".join(chunk.content for chunk in chunks).replace(" ", "") == f"hash{blob}end"


def test_pages_are_carried_onto_chunks() -> None:
    texts = [f"page{n} " + prose(30, seed=n) for n in range(1, 9)]
    chunks = chunk_document(
        document(*texts, pages=list(range(1, 9))), "naive", {"chunk_token_num": 90}
    )
    assert_within_budget(chunks, 90)
    seen = []
    current = None  # the page the previous chunk ended on
    for chunk in chunks:
        markers = [n for n in range(1, 9) if f"page{n} " in chunk.content]
        continued = [] if chunk.content.startswith("page") else [current]
        expected = continued + markers
        assert list(chunk.pages) == expected
        current = expected[-1]
        assert chunk.positions == tuple((page, 0, 0, 0, 0) for page in expected)
        seen.extend(chunk.pages)
    assert sorted(set(seen)) == list(range(1, 9))


def test_naive_keeps_a_heading_with_the_text_it_heads() -> None:
    sections = [
        Section(prose(45, seed=1)),
        Section("Chapter two", heading=True),
        Section(prose(40)),
    ]
    chunks = chunk_document(
        ParsedDocument(sections=tuple(sections)), "naive", {"chunk_token_num": 60}
    )
    assert chunks[1].content.startswith("Chapter two\n")
    assert "Chapter two" not in chunks[0].content


def test_manual_starts_a_chunk_at_every_heading() -> None:
    sections = (
        Section("Intro", heading=True),
        Section("short"),
        Section("Part A", heading=True),
        Section("a text"),
        Section("Part B", heading=True),
        Section("b text"),
    )
    parsed = ParsedDocument(sections=sections)
    assert [c.content for c in chunk_document(parsed, "manual")] == [
        "Intro\nshort",
        "Part A\na text",
        "Part B\nb text",
    ]
    assert [c.content for c in chunk_document(parsed, "naive")] == [
        "Intro\nshort\nPart A\na text\nPart B\nb text"
    ]


def test_manual_keeps_a_heading_whole_and_stacked_headings_together() -> None:
    sections = (
        Section("Part one! The start", heading=True),
        Section("Chapter 1", heading=True),
        Section("body one"),
        Section("Part two", heading=True),
        Section("body two"),
    )
    chunks = chunk_document(ParsedDocument(sections=sections), "manual", {"delimiter": "\n!"})
    assert [c.content for c in chunks] == [
        "Part one! The start\nChapter 1\nbody one",
        "Part two\nbody two",
    ]


def test_one_is_the_whole_document() -> None:
    parsed = document(prose(600), "second page", pages=[1, 2])
    (chunk,) = chunk_document(parsed, "one", {"chunk_token_num": 16})
    assert chunk.content == parsed.text
    assert chunk.pages == (1, 2)
    assert chunk.token_count == count_tokens(parsed.text) > 16


def test_qa_pairs_become_one_chunk_each_with_the_question_kept() -> None:
    parsed = ParsedDocument(
        qa_pairs=(
            QAPair("What is Sluice?", "A chat backend."),
            QAPair("退货政策？", "七天无理由。"),
        )
    )
    chunks = chunk_document(parsed, "qa")
    assert [(c.content, c.questions) for c in chunks] == [
        ("Q: What is Sluice?\nA: A chat backend.", ("What is Sluice?",)),
        ("Q: 退货政策？\nA: 七天无理由。", ("退货政策？",)),
    ]
    assert [c.token_count for c in chunks] == [count_tokens(c.content) for c in chunks]


def test_settings_from_parser_config_fall_back_to_defaults() -> None:
    assert ChunkSettings.from_parser_config(None) == ChunkSettings(512, "\n")
    assert ChunkSettings.from_parser_config({"chunk_token_num": "9", "delimiter": ""}) == (
        ChunkSettings(512, "\n")
    )
    assert ChunkSettings.from_parser_config({"chunk_token_num": 128, "delimiter": "。"}) == (
        ChunkSettings(128, "。")
    )


def test_unknown_method_and_blank_text() -> None:
    with pytest.raises(ValueError, match="unknown chunk method"):
        chunk_document(document("x"), "paper")
    assert chunk_document(document(" \n\n "), "naive") == []


@pytest.mark.parametrize("seed", range(6))
def test_mixed_text_keeps_every_character_within_any_budget(seed: int) -> None:
    rng = random.Random(seed)
    parts = []
    for _ in range(300):
        roll = rng.random()
        if roll < 0.4:
            parts.append(rng.choice(WORDS) + " ")
        elif roll < 0.7:
            start = rng.randrange(len(CHINESE) - 8)
            parts.append(CHINESE[start : start + rng.randint(1, 8)])
        else:
            parts.append(
                rng.choice(["。", "！", ". ", "\n", "\n\n", "; ", "x" * 30, "3.14 ", "，"])
            )
    text = "".join(parts)
    budget = rng.choice([8, 20, 64, 200])
    sections = [Section(text[i : i + 700], page=i // 700 + 1) for i in range(0, len(text), 700)]
    chunks = chunk_document(
        ParsedDocument(sections=tuple(sections)), "naive", {"chunk_token_num": budget}
    )
    assert_within_budget(chunks, budget)
    squeeze = "".maketrans("", "", " \n")
    assert "".join(c.content for c in chunks).translate(squeeze) == text.translate(squeeze)
    assert all(chunk.pages and list(chunk.pages) == sorted(chunk.pages) for chunk in chunks)
