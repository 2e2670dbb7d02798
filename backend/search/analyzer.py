"""The one text analyzer behind keyword search, used at index time and at query time.

Both stores (SQLite FTS5 here, Elasticsearch with issue 10) index the analyzer's output
as space-separated terms and only split on spaces, so a term means the same in both and
BM25 counts the same tokens. Rules:

- Text is NFKC-normalised first, so full-width letters and digits (common in Chinese
  text) match their ASCII forms, then case-folded.
- Runs of Han characters and Japanese kana are segmented into words by jieba's search
  mode without its HMM: dictionary words, plus the dictionary words inside a long one
  ("中华人民共和国" also gives "人民", "共和国"), so a query naming part of a compound
  still matches it. The HMM guesses words the dictionary lacks, and guesses differently
  in a short query than in a long passage; without it an unknown name is single
  characters on both sides. Measured with BM25 on the CMRC trial set (nDCG@10):
  accurate mode with HMM 0.978, without 0.985, search mode without HMM 0.986.
  Whole runs go to jieba, so a word is never cut by where a Latin word happens to sit
  next to it. jieba knows no Japanese words: kana come out as single characters
  (unigram matching, which still finds them).
- Every other script is split into words of letters, digits and combining marks
  (`\\p{M}` keeps Devanagari or Arabic words whole; a plain `\\w` would cut them at
  their vowel signs). Digits are kept: "COVID-19" gives "covid", "19".
- Punctuation, symbols, spaces and underscores separate words and are dropped.

jieba's dictionary (about a second to load) is loaded once per process, on first use,
so importing this module stays cheap for processes that never analyze Chinese.
"""

from __future__ import annotations

import logging
import threading
import unicodedata

import regex

# Runs of CJK (segmented by jieba), captured so `split` keeps them between the rest.
CJK_RUNS = regex.compile(r"([\p{Han}\p{Hiragana}\p{Katakana}\u30fc]+)")
# A word of any other script (applied only to text between CJK runs).
WORDS = regex.compile(r"[\p{L}\p{N}\p{M}]+")
# What jieba may hand back inside a CJK run that is not a word (it keeps odd symbols).
WORDLIKE = regex.compile(r"[\p{L}\p{N}]")

_segmenter_lock = threading.Lock()
_segmenter = None


def segmenter():  # -> jieba.Tokenizer
    """jieba's tokenizer with its dictionary loaded; built once, on first CJK text."""
    global _segmenter
    if _segmenter is None:
        with _segmenter_lock:
            if _segmenter is None:
                import jieba

                # jieba announces its dictionary loading at DEBUG/INFO on its own logger.
                jieba.setLogLevel(logging.WARNING)
                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                _segmenter = tokenizer
    return _segmenter


def analyze(text: str) -> list[str]:
    """The terms of `text`, in order, duplicates kept (term frequency matters to BM25)."""
    normalised = unicodedata.normalize("NFKC", text).casefold()
    # split() with a captured pattern alternates: other text, CJK run, other text, ...
    pieces = CJK_RUNS.split(normalised)
    terms: list[str] = WORDS.findall(pieces[0])
    for index in range(1, len(pieces), 2):
        for word in segmenter().cut_for_search(pieces[index], HMM=False):
            if WORDLIKE.search(word):
                terms.append(word)
        terms += WORDS.findall(pieces[index + 1])
    return terms


def analyzed_text(text: str) -> str:
    """`analyze(text)` joined by spaces: what a store indexes in its keyword field."""
    return " ".join(analyze(text))


def query_terms(text: str) -> list[str]:
    """The distinct terms of a query, in first-seen order (a repeated word in a question
    should not count twice in an OR query)."""
    return list(dict.fromkeys(analyze(text)))
