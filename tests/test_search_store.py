"""The search store contract: every `SearchStore` passes this suite (issue 10 adds
Elasticsearch to `STORE_KINDS`), so the code above the store never asks which it has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from backend.search.analyzer import query_terms
from backend.search.store import ChunkUpdate, SearchFilter, SearchStore
from tests.support.search_stores import STORE_KINDS, chunk, open_store, unit


@pytest.fixture(params=STORE_KINDS)
async def search_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SearchStore]:
    url = request.getfixturevalue("elasticsearch_url") if request.param == "elasticsearch" else None
    async with open_store(request.param, tmp_path, url) as store:
        yield store


ALICE = SearchFilter("alice")


def ids(hits: list) -> list[str]:
    return [hit.record.chunk_id for hit in hits]


async def keyword(store: SearchStore, text: str, filter: SearchFilter = ALICE, k: int = 10):
    return await store.keyword_search(query_terms(text), filter, k)


# -- keyword leg ---------------------------------------------------------------------------


async def test_bm25_ranks_by_term_frequency_rarity_and_length(search_store: SearchStore) -> None:
    await search_store.replace_document(
        "doc-a",
        [
            chunk("often", "river river river flows through the valley"),
            chunk("once", "a river flows through the long wide green valley in spring"),
            chunk("rare", "the delta of the nile"),
            chunk("none", "mountains and lakes"),
            *[chunk(f"filler-{i}", f"the valley town number {i}") for i in range(6)],
        ],
    )
    hits = await keyword(search_store, "river")
    assert ids(hits) == ["often", "once"]
    assert hits[0].score > hits[1].score > 0
    # "nile" is in one chunk, "valley" in eight: the rare term decides the ranking.
    hits = await keyword(search_store, "nile valley")
    assert ids(hits)[0] == "rare"
    assert "none" not in ids(hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_keyword_search_in_chinese_and_mixed_text(search_store: SearchStore) -> None:
    await search_store.replace_document(
        "doc-a",
        [
            chunk("capital", "北京是中国的首都，也是一座历史名城。"),  # noqa: RUF001
            chunk("sluice", "Sluice 把文档切成块，然后用 BM25 检索。"),  # noqa: RUF001
            chunk("english", "Beijing is the capital of China."),
        ],
    )
    assert ids(await keyword(search_store, "首都北京")) == ["capital"]
    assert ids(await keyword(search_store, "bm25 检索")) == ["sluice"]
    assert ids(await keyword(search_store, "CHINA")) == ["english"]


async def test_keywords_and_questions_are_searchable(search_store: SearchStore) -> None:
    await search_store.add_chunks(
        [
            chunk("faq", "Go to settings and press reset.", questions=["How do I wipe my phone?"]),
            chunk("tagged", "Quarterly figures.", keywords=["revenue"]),
        ]
    )
    assert ids(await keyword(search_store, "wipe phone")) == ["faq"]
    assert ids(await keyword(search_store, "revenue")) == ["tagged"]


async def test_no_terms_or_no_match_finds_nothing(search_store: SearchStore) -> None:
    await search_store.add_chunks([chunk("a", "some words here")])
    assert await search_store.keyword_search([], ALICE, 10) == []
    assert await keyword(search_store, "absent") == []
    # FTS operators in a question are plain words, not syntax.
    assert await keyword(search_store, 'NOT OR AND NEAR "') == []


async def test_common_words_match_only_when_nothing_else_is_asked(
    search_store: SearchStore,
) -> None:
    """Both stores apply term_statistics.informative_terms: "the" beside a rarer word is
    not matched, and beside only words the corpus lacks matches nothing at all."""
    await search_store.add_chunks(
        [
            chunk("gizmo", "the zorblat gizmo is blue"),
            chunk("lake", "the lake freezes in the winter"),
            chunk("heron", "the heron fishes at dawn"),
        ]
    )
    assert ids(await keyword(search_store, "the zorblat")) == ["gizmo"]
    assert await keyword(search_store, "the football match") == []
    assert ids(await keyword(search_store, "the")) == ["lake", "gizmo", "heron"]


# -- vector leg ----------------------------------------------------------------------------


async def test_vector_search_is_exact_cosine_best_first(search_store: SearchStore) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(40, 16)).astype(np.float32)
    await search_store.replace_document(
        "doc-a", [chunk(f"c{i:02d}", f"chunk {i}", vector=v) for i, v in enumerate(vectors)]
    )
    query = rng.normal(size=16).astype(np.float32)
    hits = await search_store.vector_search(query, ALICE, 5)
    unit_rows = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = unit_rows @ (query / np.linalg.norm(query))
    best = np.argsort(-expected)[:5]
    assert ids(hits) == [f"c{i:02d}" for i in best]
    assert [h.score for h in hits] == pytest.approx(expected[best].tolist(), abs=1e-5)
    # The vector leg may leave its records' vectors out (their score is the cosine).
    assert hits[0].record.vector is None or np.allclose(hits[0].record.vector, vectors[best[0]])


async def test_keyword_hits_carry_their_vectors(search_store: SearchStore) -> None:
    """Fusion computes a keyword-only hit's cosine from its record's vector."""
    await search_store.add_chunks(
        [
            chunk("river", "river delta", vector=unit([0, 1, 0])),
            chunk("hill", "hill top", vector=unit([1, 0, 0])),
        ]
    )
    for by_keyword in (
        await keyword(search_store, "river"),
        (await search_store.search_legs(["river"], unit([1, 0, 0]), ALICE, 1))[0],
    ):
        assert ids(by_keyword) == ["river"]
        assert by_keyword[0].record.vector is not None
        assert np.allclose(by_keyword[0].record.vector, unit([0, 1, 0]))


async def test_vector_search_skips_chunks_without_vectors(search_store: SearchStore) -> None:
    await search_store.add_chunks(
        [chunk("with", "a", vector=unit([1, 0, 0])), chunk("without", "b", vector=None)]
    )
    assert ids(await search_store.vector_search(unit([0, 1, 0]), ALICE, 10)) == ["with"]


async def test_query_vector_of_another_dimension_is_refused(search_store: SearchStore) -> None:
    await search_store.add_chunks([chunk("a", "x", vector=unit([1, 0, 0]))])
    with pytest.raises(ValueError, match="dimension"):
        await search_store.vector_search(unit([1, 0]), ALICE, 3)


# -- filters and tenants -------------------------------------------------------------------


async def filtered_corpus(store: SearchStore) -> None:
    await store.replace_document("doc-a", [chunk("a1", "shared words", vector=unit([1, 0.1, 0]))])
    await store.replace_document(
        "doc-b",
        [
            chunk("b1", "shared words", document="doc-b", vector=unit([1, 0.2, 0])),
            chunk("b2", "shared words", document="doc-b", vector=unit([1, 0, 0]), available=False),
        ],
    )
    await store.replace_document(
        "doc-c",
        [chunk("c1", "shared words", dataset="ds-c", document="doc-c", vector=unit([1, 0.3, 0]))],
    )


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        (SearchFilter("alice"), {"a1", "b1", "c1"}),
        (SearchFilter("alice", available_only=False), {"a1", "b1", "b2", "c1"}),
        (SearchFilter("alice", dataset_ids=["ds-a"]), {"a1", "b1"}),
        (SearchFilter("alice", dataset_ids=["ds-c", "ds-x"]), {"c1"}),
        (SearchFilter("alice", document_ids=["doc-b"], available_only=False), {"b1", "b2"}),
        (SearchFilter("alice", dataset_ids=["ds-a"], document_ids=["doc-c"]), set()),
        (SearchFilter("alice", dataset_ids=[]), set()),
        (SearchFilter("alice", document_ids=[]), set()),
        (SearchFilter("bob"), set()),
    ],
)
async def test_filters_apply_to_both_legs(
    search_store: SearchStore, filter: SearchFilter, expected: set[str]
) -> None:
    await filtered_corpus(search_store)
    assert set(ids(await keyword(search_store, "shared", filter))) == expected
    assert set(ids(await search_store.vector_search(unit([1, 0, 0]), filter, 10))) == expected
    by_keyword, by_vector = await search_store.search_legs(
        query_terms("words"), unit([0, 1, 0]), filter, 10
    )
    assert set(ids(by_keyword)) == set(ids(by_vector)) == expected


async def test_tenants_with_the_same_words_never_see_each_other(
    search_store: SearchStore,
) -> None:
    # Bob's chunks match the query better on both legs; alice's top 1 is still hers.
    await search_store.add_chunks(
        [
            chunk("alice-1", "quarterly revenue report", vector=unit([1, 1, 0])),
            chunk(
                "bob-1",
                "revenue revenue revenue",
                tenant="bob",
                dataset="ds-bob",
                document="doc-bob",
                vector=unit([1, 0, 0]),
            ),
        ]
    )
    bob = SearchFilter("bob")
    assert ids(await keyword(search_store, "revenue", ALICE, 1)) == ["alice-1"]
    assert ids(await keyword(search_store, "revenue", bob, 1)) == ["bob-1"]
    assert ids(await search_store.vector_search(unit([1, 0, 0]), ALICE, 1)) == ["alice-1"]
    # Naming the other tenant's dataset or document does not reach it.
    intruder = SearchFilter("alice", dataset_ids=["ds-bob"], document_ids=["doc-bob"])
    assert await keyword(search_store, "revenue", intruder) == []
    assert await search_store.vector_search(unit([1, 0, 0]), intruder, 5) == []


# -- writes --------------------------------------------------------------------------------


async def test_replace_swaps_a_documents_chunks_and_a_retry_does_not_duplicate(
    search_store: SearchStore,
) -> None:
    old = [chunk(f"old-{i}", "old text", vector=unit([1, 0, i])) for i in range(3)]
    new = [chunk(f"new-{i}", "new text", vector=unit([0, 1, i])) for i in range(2)]
    await search_store.replace_document("doc-a", old)
    await search_store.replace_document("doc-a", new)
    await search_store.replace_document("doc-a", new)
    assert await search_store.count_chunks("doc-a") == 2
    assert await keyword(search_store, "old") == []
    assert ids(await search_store.vector_search(unit([1, 0, 0]), ALICE, 10)) == [
        "new-0",
        "new-1",
    ]


async def test_a_concurrent_reader_never_sees_half_a_reparse(
    search_store: SearchStore, tmp_path: Path
) -> None:
    size = 40
    versions = {
        tag: [
            chunk(f"{tag}-{i}", f"common {tag} words {i}", vector=unit([1, i, 0]))
            for i in range(size)
        ]
        for tag in ("first", "second")
    }
    await search_store.replace_document("doc-a", versions["first"])
    seen: list[set[str]] = []
    done = asyncio.Event()

    async def reparse() -> None:
        for round_ in range(15):
            await search_store.replace_document("doc-a", versions[("second", "first")[round_ % 2]])
        done.set()

    async def read() -> None:
        while not done.is_set():
            by_keyword, by_vector = await search_store.search_legs(
                query_terms("common"), unit([1, 1, 0]), ALICE, size * 2
            )
            page = await search_store.list_chunks("doc-a", limit=size * 2)
            for result in (ids(by_keyword), ids(by_vector), [r.chunk_id for r in page.chunks]):
                assert len(result) == size
                seen.append({name.split("-")[0] for name in result})
            legs = {ids(by_keyword)[0].split("-")[0], ids(by_vector)[0].split("-")[0]}
            assert len(legs) == 1, "the two legs read different versions"

    await asyncio.gather(reparse(), read(), read())
    assert seen and all(len(tags) == 1 for tags in seen)


async def test_add_chunks_upserts_by_chunk_id(search_store: SearchStore) -> None:
    await search_store.add_chunks([chunk("a", "first text")])
    await search_store.add_chunks([chunk("a", "second text"), chunk("b", "other")])
    assert await search_store.count_chunks("doc-a") == 2
    record = await search_store.get_chunk("a")
    assert record is not None and record.content == "second text"
    assert await keyword(search_store, "first") == []


async def test_update_chunk_changes_what_both_legs_find(search_store: SearchStore) -> None:
    await search_store.add_chunks(
        [chunk("a", "apples", vector=unit([1, 0, 0])), chunk("b", "pears", vector=unit([0, 1, 0]))]
    )
    await search_store.vector_search(unit([1, 0, 0]), ALICE, 1)  # warm any cache
    updated = await search_store.update_chunk(
        "doc-a",
        "a",
        ChunkUpdate(content="bananas", important_keywords=["fruit"], vector=unit([0, 0, 1])),
    )
    assert updated is not None and updated.content == "bananas"
    assert updated.important_keywords == ("fruit",)
    assert await keyword(search_store, "apples") == []
    assert ids(await keyword(search_store, "bananas fruit")) == ["a"]
    assert ids(await search_store.vector_search(unit([0, 0, 1]), ALICE, 1)) == ["a"]
    await search_store.update_chunk("doc-a", "a", ChunkUpdate(available=False))
    assert await keyword(search_store, "bananas") == []
    assert ids(await search_store.vector_search(unit([0, 0, 1]), ALICE, 5)) == ["b"]
    record = await search_store.get_chunk("a")
    assert record is not None and record.available is False and record.content == "bananas"
    # A chunk is changed only through its own document.
    assert await search_store.update_chunk("doc-other", "b", ChunkUpdate(content="x")) is None
    assert await search_store.update_chunk("doc-a", "missing", ChunkUpdate(content="x")) is None


async def test_deletes_by_ids_document_and_dataset(search_store: SearchStore) -> None:
    await filtered_corpus(search_store)
    everyone = SearchFilter("alice", available_only=False)
    await search_store.vector_search(unit([1, 0, 0]), everyone, 10)  # warm any cache
    # Ids are scoped by document: b1 is not doc-a's, so it stays.
    assert await search_store.delete_chunks("doc-a", ["a1", "b1", "missing"]) == 1
    assert await search_store.delete_chunks("doc-a", []) == 0
    assert await search_store.get_chunk("b1") is not None
    found = await search_store.vector_search(unit([1, 0, 0]), everyone, 10)
    assert set(ids(found)) == {"b1", "b2", "c1"}
    assert await search_store.delete_document("doc-b") == 2
    assert set(ids(await search_store.vector_search(unit([1, 0, 0]), everyone, 10))) == {"c1"}
    assert await search_store.delete_dataset("ds-c") == 1
    assert await search_store.vector_search(unit([1, 0, 0]), everyone, 10) == []
    assert await keyword(search_store, "shared", everyone) == []
    assert await search_store.delete_document("doc-b") == 0


# -- reads by document ---------------------------------------------------------------------


async def test_list_chunks_pages_in_document_order(search_store: SearchStore) -> None:
    records = [chunk(f"c{i}", f"part {i} {'special' if i % 3 == 0 else 'plain'}") for i in range(7)]
    await search_store.replace_document("doc-a", records)
    await search_store.add_chunks([chunk("other", "special", document="doc-b")])
    page = await search_store.list_chunks("doc-a", offset=2, limit=3)
    assert page.total == 7
    assert [r.chunk_id for r in page.chunks] == ["c2", "c3", "c4"]
    page = await search_store.list_chunks("doc-a", keywords="SPECIAL part", limit=2)
    assert page.total == 3
    assert [r.chunk_id for r in page.chunks] == ["c0", "c3"]
    page = await search_store.list_chunks("doc-a", chunk_id="c5")
    assert [r.chunk_id for r in page.chunks] == ["c5"]
    assert (await search_store.list_chunks("doc-a", chunk_id="other")).total == 0
    assert (await search_store.list_chunks("doc-a", offset=50)).chunks == []
    assert await search_store.count_chunks("doc-a") == 7


async def test_records_round_trip(search_store: SearchStore) -> None:
    original = chunk(
        "a", "全文 content", keywords=["k1", "关键词"], questions=["q?"], vector=[0.5, -1.5, 2.0]
    )
    await search_store.add_chunks([original])
    stored = await search_store.get_chunk("a", "doc-a")
    assert stored == original
    assert stored is not None and stored.vector is not None
    assert stored.vector.dtype == np.float32
    assert np.array_equal(stored.vector, original.vector)
    assert await search_store.get_chunk("a", "doc-b") is None
    assert await search_store.get_chunk("missing") is None
