"""The analyzer: one set of terms for index and query, over mixed Chinese and other scripts."""

from __future__ import annotations

from backend.search.analyzer import analyze, analyzed_text, query_terms


def test_chinese_is_segmented_into_words_not_characters() -> None:
    assert analyze("我爱北京天安门") == ["我", "爱", "北京", "天安", "天安门"]


def test_a_compound_also_gives_the_words_inside_it() -> None:
    terms = analyze("中华人民共和国成立于1949年")
    assert {"中华人民共和国", "人民", "共和国", "成立", "1949", "年"} <= set(terms)
    # A query naming the dictionary compound "首都北京" still finds "北京".
    assert "北京" in analyze("首都北京")


def test_mixed_chinese_and_english_split_at_script_boundaries() -> None:
    terms = analyze("Sluice把文档切成块，然后用BM25检索。")  # noqa: RUF001
    assert terms == ["sluice", "把", "文档", "切成", "块", "然后", "用", "bm25", "检索"]


def test_latin_words_are_lower_cased_and_punctuation_dropped() -> None:
    assert analyze("Hello, WORLD! It's (COVID-19) e-mail_address.") == [
        "hello",
        "world",
        "it",
        "s",
        "covid",
        "19",
        "e",
        "mail",
        "address",
    ]


def test_digits_are_kept_and_full_width_forms_fold_to_ascii() -> None:
    assert analyze("ＡＢＣ１２３ 版本 3.14") == ["abc123", "版本", "3", "14"]  # noqa: RUF001


def test_other_scripts_keep_their_words_whole() -> None:
    # Devanagari vowel signs are combining marks; a plain \w split would cut the word.
    assert analyze("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert analyze("Straße Café naïve") == ["strasse", "café", "naïve"]
    assert analyze("Привет мир") == ["привет", "мир"]


def test_only_punctuation_and_symbols_give_no_terms() -> None:
    assert analyze("，。！？——……「」 ... !!! @#$ ✓ 😀") == []  # noqa: RUF001
    assert analyze("") == []


def test_index_and_query_analysis_agree() -> None:
    document = analyzed_text("数据集里的文档会被切成块 (chunks) and embedded.")
    for term in query_terms("文档切成块? CHUNKS!"):
        assert term in document.split(" ")


def test_query_terms_are_distinct_in_first_seen_order() -> None:
    assert query_terms("the cat and the hat 猫 猫") == ["the", "cat", "and", "hat", "猫"]
