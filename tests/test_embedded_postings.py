"""The embedded store's BM25 postings (backend/search/embedded_postings.py): Lucene's
BM25 (backend/search/lucene_bm25.py) recomputed from the analyzed text FTS5 keeps, the
same through every kind of write, and derived once for a file written before the
postings existed. (tests/test_search_parity.py compares with Elasticsearch itself.)"""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from backend.search import embedded_postings as postings
from backend.search import lucene_bm25 as lucene
from backend.search.embedded import EmbeddedSearchStore
from backend.search.store import ChunkUpdate, SearchFilter
from backend.search.term_statistics import informative_terms
from tests.support.search_stores import chunk

pytestmark = pytest.mark.sqlite_only

WORDS = [f"w{i}" for i in range(60)]
ALICE = SearchFilter("alice")


def corpus(seed: int, documents: int = 6, size: int = 25):
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(len(WORDS))]
    result = {}
    for d in range(documents):
        result[f"doc-{d}"] = [
            chunk(
                f"d{d}-c{c}",
                " ".join(rng.choices(WORDS, weights, k=rng.randint(3, 30))),
                document=f"doc-{d}",
            )
            for c in range(size)
        ]
    return result


def reference_scores(path: Path, terms: list[str]) -> dict[str, float]:
    """Lucene's BM25 recomputed in plain Python from the analyzed text FTS5 stores: every
    chunk holding one of the terms the store matches (those in at most half the chunks,
    see informative_terms), with its score."""
    with sqlite3.connect(path) as conn:
        stats = postings.statistics(conn, terms)
        terms = informative_terms(terms, stats.frequencies, stats.chunks)
        rows = conn.execute(
            "SELECT c.chunk_id, c.available, t.terms FROM chunks AS c "
            "JOIN chunk_terms AS t ON t.rowid = c.id"
        ).fetchall()
    texts = {chunk_id: text.split() for chunk_id, _, text in rows}
    average = sum(len(words) for words in texts.values()) / len(texts)
    frequency = {t: sum(t in words for words in texts.values()) for t in terms}
    scores = {}
    for chunk_id, available, _ in rows:
        words = texts[chunk_id]
        found = [t for t in terms if t in words]
        if not available or not found:
            continue
        length = float(lucene.LENGTH_TABLE[lucene.encoded_lengths(np.array([len(words)]))[0]])
        norm = 1.2 * (1 - 0.75 + 0.75 * length / average)
        scores[chunk_id] = sum(
            math.log(1 + (len(texts) - frequency[t] + 0.5) / (frequency[t] + 0.5))
            * words.count(t)
            * (1.2 + 1)
            / (words.count(t) + norm)
            for t in found
        )
    return scores


async def assert_lucene_bm25(store: EmbeddedSearchStore, queries: list[list[str]]) -> None:
    for terms in queries:
        hits = await store.keyword_search(terms, ALICE, 1000)
        expected = reference_scores(store.path, terms)
        assert {h.record.chunk_id for h in hits} == set(expected), terms
        for hit in hits:
            assert hit.score == pytest.approx(expected[hit.record.chunk_id], rel=1e-5)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)


QUERIES = [["w5"], ["w12", "w40"], ["w3", "w7", "w59"], ["w20", "w21", "w22", "w23"]]


async def test_bm25_from_postings_is_lucenes_through_every_write(tmp_path: Path) -> None:
    store = EmbeddedSearchStore(tmp_path / "search.sqlite3")
    try:
        documents = corpus(seed=7)
        for document_id, records in documents.items():
            await store.replace_document(document_id, records)
        await assert_lucene_bm25(store, QUERIES)

        # Re-parse one document with other text, edit, disable and delete chunks, add
        # chunks to a document, delete a document: the postings follow each write.
        await store.replace_document("doc-1", corpus(seed=8)["doc-1"])
        await store.update_chunk("doc-2", "d2-c3", ChunkUpdate(content="w12 w12 w40 w40 w40"))
        await store.update_chunk("doc-2", "d2-c4", ChunkUpdate(available=False))
        await store.delete_chunks("doc-3", ["d3-c0", "d3-c1"])
        await store.add_chunks([chunk("extra", "w5 w12 w3", document="doc-4")])
        await store.delete_document("doc-5")
        await assert_lucene_bm25(store, QUERIES)
        hits = await store.keyword_search(["w12", "w40"], ALICE, 50)
        assert "d2-c4" not in {h.record.chunk_id for h in hits}

        with sqlite3.connect(store.path) as conn:
            chunks, tokens = conn.execute("SELECT chunks, tokens FROM term_totals").fetchone()
            assert chunks == conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
            texts = conn.execute("SELECT terms FROM chunk_terms").fetchall()
            assert tokens == sum(len(text.split()) for (text,) in texts)
            stale = conn.execute(
                "SELECT count(*) FROM term_postings WHERE document_id = 'doc-5'"
            ).fetchone()[0]
            assert stale == 0
    finally:
        await store.close()


async def test_a_file_written_before_the_postings_gets_them_on_open(tmp_path: Path) -> None:
    path = tmp_path / "search.sqlite3"
    store = EmbeddedSearchStore(path)
    for document_id, records in corpus(seed=3, documents=3).items():
        await store.replace_document(document_id, records)
    before = await store.keyword_search(["w4", "w9"], ALICE, 10)
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "DROP TABLE term_postings; DROP TABLE term_documents; DROP TABLE term_totals;"
        )

    reopened = EmbeddedSearchStore(path)
    try:
        after = await reopened.keyword_search(["w4", "w9"], ALICE, 10)
        assert [(h.record.chunk_id, h.score) for h in after] == [
            (h.record.chunk_id, h.score) for h in before
        ]
        await assert_lucene_bm25(reopened, QUERIES)
    finally:
        await reopened.close()


def test_lengths_are_stored_as_lucenes_norm_byte() -> None:
    """SmallFloat.intToByte4 / byte4ToInt: exact below 40 terms, 4 significant bits above
    (values worked by hand from Lucene's definition)."""
    lengths = np.array([0, 23, 24, 39, 40, 41, 42, 100, 1000])
    decoded = lucene.LENGTH_TABLE[lucene.encoded_lengths(lengths)]
    assert decoded.tolist() == [0, 23, 24, 39, 40, 40, 42, 96, 984]


def test_ties_at_the_cut_keep_the_lowest_row_ids() -> None:
    ids = [np.array([9, 3, 5, 7], dtype=np.int64)]
    weights = [np.array([1.0, 2.0, 1.0, 1.0])]
    assert postings.top_scores(ids, weights, 2) == [(3, 2.0), (5, 1.0)]
    assert postings.top_scores([], [], 2) == []


def test_scores_summed_over_terms_alike_for_compact_and_scattered_row_ids() -> None:
    rng = np.random.default_rng(5)
    for spread in (1, 10_000):  # the dense bincount path, then the sort path
        ids = [rng.choice(200, size=80, replace=False).astype(np.int64) * spread for _ in range(3)]
        weights = [rng.random(80).astype(np.float32) for _ in range(3)]
        expected: dict[int, float] = {}
        for term_ids, term_weights in zip(ids, weights, strict=True):
            for row_id, weight in zip(term_ids.tolist(), term_weights.tolist(), strict=True):
                expected[row_id] = expected.get(row_id, 0.0) + weight
        best = postings.top_scores(ids, weights, 10)
        ranked = sorted(expected.items(), key=lambda item: (-np.float32(item[1]), item[0]))[:10]
        assert [row_id for row_id, _ in best] == [row_id for row_id, _ in ranked]
        assert [score for _, score in best] == pytest.approx([s for _, s in ranked], rel=1e-6)
