"""What only the embedded store promises: one SQLite file shared safely by processes, the
per-process vector matrix cache, and the invariants it keeps per dataset."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from backend.search.analyzer import query_terms
from backend.search.embedded import EmbeddedSearchStore
from backend.search.store import SearchFilter
from backend.search.stores import build_search_store
from backend.settings import Settings
from tests.support.search_stores import chunk, unit

ALICE = SearchFilter("alice")

pytestmark = pytest.mark.sqlite_only


def version_records(tag: str, size: int) -> list:
    return [chunk(f"{tag}-{i}", f"common {tag} {i}", vector=unit([1, i, 0])) for i in range(size)]


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from backend.search.embedded import EmbeddedSearchStore
    from tests.support.search_stores import chunk, unit

    async def main(path, rounds, size):
        store = EmbeddedSearchStore(path)
        for round_ in range(rounds):
            tag = ("second", "first")[round_ % 2]
            records = [
                chunk(f"{tag}-{i}", f"common {tag} {i}", vector=unit([1, i, 0]))
                for i in range(size)
            ]
            await store.replace_document("doc-a", records)
        await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


async def test_another_process_reparsing_is_seen_whole_and_never_locks_a_reader(
    tmp_path: Path,
) -> None:
    path, size = tmp_path / "search.sqlite3", 30
    store = EmbeddedSearchStore(path)
    await store.replace_document("doc-a", version_records("first", size))
    # Two writer processes at once: they queue on the write lock instead of failing.
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(path), "21", str(size), cwd=Path.cwd()
        )
        for _ in range(2)
    ]

    async def versions_seen() -> set[str]:
        """The version the reader sees, checked whole in both legs."""
        by_keyword, by_vector = await store.search_legs(
            query_terms("common"), unit([1, 1, 0]), ALICE, size * 2
        )
        seen = set()
        for hits in (by_keyword, by_vector):
            tags = {hit.record.chunk_id.split("-")[0] for hit in hits}
            assert len(hits) == size and len(tags) == 1
            seen |= tags
        return seen

    try:
        before = await versions_seen()
        while any(w.returncode is None for w in writers):
            await versions_seen()
            await asyncio.sleep(0.002)  # the loop records a writer's exit meanwhile
        # Each writer's last round writes "second"; on a loaded machine the loop above may
        # see none of the rounds in between, so the end state is what proves it followed.
        after = await versions_seen()
    finally:
        for writer in writers:
            if writer.returncode is None:
                writer.kill()
            await writer.wait()
        await store.close()
    assert [w.returncode for w in writers] == [0, 0]
    # The reader's cached matrix followed the other processes' writes.
    assert (before, after) == ({"first"}, {"second"})


async def test_vector_matrix_is_cached_until_the_dataset_changes(tmp_path: Path) -> None:
    store = EmbeddedSearchStore(tmp_path / "search.sqlite3")
    other = EmbeddedSearchStore(tmp_path / "search.sqlite3")  # e.g. the ingest worker
    try:
        await store.replace_document("doc-a", version_records("first", 5))
        for _ in range(3):
            await store.vector_search(unit([1, 0, 0]), ALICE, 3)
        assert store.vectors.loads == 1
        await other.add_chunks([chunk("late", "late", vector=unit([1, -5, 0]))])
        hits = await store.vector_search(unit([1, -5, 0]), ALICE, 1)
        assert [h.record.chunk_id for h in hits] == ["late"]
        assert store.vectors.loads == 2
        # Another dataset's write leaves this one's matrix alone.
        await other.add_chunks([chunk("x", "x", dataset="ds-x", vector=unit([0, 0, 1]))])
        await store.vector_search(unit([1, 0, 0]), SearchFilter("alice", dataset_ids=["ds-a"]), 1)
        assert store.vectors.loads == 2
    finally:
        await store.close()
        await other.close()


async def test_the_file_is_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    store = EmbeddedSearchStore(tmp_path / "search.sqlite3")
    await store.open()
    await store.close()
    with sqlite3.connect(tmp_path / "search.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_dataset_keeps_one_tenant_and_one_dimension(tmp_path: Path) -> None:
    store = EmbeddedSearchStore(tmp_path / "search.sqlite3")
    try:
        await store.add_chunks([chunk("a", "x", vector=unit([1, 0, 0]))])
        with pytest.raises(ValueError, match="belongs to tenant alice"):
            await store.add_chunks([chunk("b", "x", tenant="bob")])
        with pytest.raises(ValueError, match="3-dimensional"):
            await store.add_chunks([chunk("c", "x", vector=unit([1, 0]))])
        assert await store.count_chunks("doc-a") == 1  # the refused writes left nothing
        # Emptied, the dataset may be re-embedded with another model.
        await store.delete_document("doc-a")
        await store.add_chunks([chunk("d", "x", vector=unit([1, 0]))])
        hits = await store.vector_search(unit([1, 0]), ALICE, 1)
        assert [h.record.chunk_id for h in hits] == ["d"]
    finally:
        await store.close()


async def test_the_store_file_defaults_under_data_dir_and_follows_search_db_path(
    tmp_path: Path,
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert settings.search_db_file == tmp_path / "search.sqlite3"
    elsewhere = Settings(_env_file=None, search_db_path=str(tmp_path / "x" / "s.db"))
    store = build_search_store(elsewhere)
    assert isinstance(store, EmbeddedSearchStore)
    assert store.path == tmp_path / "x" / "s.db"
    await store.open()
    await store.close()
    assert (tmp_path / "x" / "s.db").exists()


async def test_terms_in_half_the_chunks_are_not_matched_beside_rarer_ones(
    tmp_path: Path,
) -> None:
    # FTS5 gives such a term an IDF of ~0, so matching it only costs time (at 100k chunks,
    # most of a query's) and adds zero-score chunks; alone, it still ranks by frequency.
    store = EmbeddedSearchStore(tmp_path / "search.sqlite3")
    try:
        await store.add_chunks(
            [
                chunk("rare", "the cat"),
                chunk("common-1", "the the the dog"),
                chunk("common-2", "the bird"),
                chunk("other", "a fish"),
            ]
        )
        hits = await store.keyword_search(query_terms("the cat"), ALICE, 10)
        assert [h.record.chunk_id for h in hits] == ["rare"]
        hits = await store.keyword_search(query_terms("the"), ALICE, 10)
        assert hits[0].record.chunk_id == "common-1"
        assert {h.record.chunk_id for h in hits} == {"rare", "common-1", "common-2"}
        # Beside words the corpus lacks, "the" says nothing: no keyword match at all.
        assert await store.keyword_search(query_terms("the unknownword"), ALICE, 10) == []
    finally:
        await store.close()
