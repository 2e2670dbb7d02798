"""One corpus and query set for comparing the two search stores directly (the parity test)
and for checking a reindex moved everything (the reindex test).

Generated, not hand-written, so it has what real text has and a hand-written corpus
lacks: a skewed (Zipf) vocabulary where a few words are in many chunks and most in few,
chunks of different lengths, several documents and datasets, two tenants sharing words,
a Chinese document, chunks without vectors and a hidden (unavailable) chunk. Chunks stay
under 40 terms (content, keyword and question together), the lengths Lucene stores
exactly (longer ones are rounded to 4 significant bits; docs/search.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.search.store import ChunkRecord, SearchFilter
from tests.support.search_stores import chunk

DIMENSION = 32
CHINESE = [
    "北京是中国的首都，也是一座历史名城。",  # noqa: RUF001
    "上海是中国最大的城市，位于长江入海口。",  # noqa: RUF001
    "长江是中国最长的河流，流经上海。",  # noqa: RUF001
    "黄河是中国第二长的河流。",
    "杭州的西湖很有名。",
]


@dataclass(frozen=True)
class ParityCorpus:
    documents: dict[str, list[ChunkRecord]]
    keyword_queries: list[str]
    query_vectors: list[np.ndarray]
    filters: list[SearchFilter]


def vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words: dict[str, None] = {}
    while len(words) < size:
        words["".join(rng.choice(letters, size=int(rng.integers(3, 9))))] = None
    return list(words)


def parity_corpus(seed: int = 11) -> ParityCorpus:
    rng = np.random.default_rng(seed)
    words = vocabulary(rng, 300)
    weights = 1.0 / np.arange(1, len(words) + 1)  # Zipf: word i is 1/i as frequent as word 1
    weights /= weights.sum()

    def text(shortest: int = 4, longest: int = 28) -> str:
        size = int(rng.integers(shortest, longest + 1))
        return " ".join(rng.choice(words, size=size, p=weights))

    def vector() -> np.ndarray:
        return rng.normal(size=DIMENSION).astype(np.float32)

    layout = [  # (tenant, dataset, document, chunks)
        ("alice", "ds-a", "doc-a1", 40),
        ("alice", "ds-a", "doc-a2", 25),
        ("alice", "ds-b", "doc-b1", 30),
        ("bob", "ds-bob", "doc-bob", 30),
    ]
    documents: dict[str, list[ChunkRecord]] = {}
    for tenant, dataset, document, size in layout:
        documents[document] = [
            chunk(
                f"{document}-{i:02d}",
                text(),
                tenant=tenant,
                dataset=dataset,
                document=document,
                # every 9th chunk is not embedded yet; one chunk per document is hidden
                vector=None if i % 9 == 8 else vector(),
                available=i != 3,
                keywords=[str(rng.choice(words))] if i % 5 == 0 else (),
                questions=[text(3, 8)] if i % 7 == 0 else (),
            )
            for i in range(size)
        ]
    documents["doc-zh"] = [
        chunk(f"doc-zh-{i}", sentence, dataset="ds-b", document="doc-zh", vector=vector())
        for i, sentence in enumerate(CHINESE)
    ]
    # Queries mixing words of every frequency: common, middling and rare ones.
    keyword_queries = [
        " ".join(rng.choice(words[lo:hi], size=n, replace=False))
        for lo, hi, n in [(5, 30, 1), (10, 60, 2), (20, 120, 2), (40, 300, 3), (2, 200, 3)] * 4
    ] + ["中国的河流", "上海 长江", "首都"]
    return ParityCorpus(
        documents=documents,
        keyword_queries=keyword_queries,
        query_vectors=[vector() for _ in range(8)],
        filters=[
            SearchFilter("alice"),
            SearchFilter("alice", dataset_ids=["ds-a"]),
            SearchFilter("alice", document_ids=["doc-a2", "doc-b1"], available_only=False),
            SearchFilter("bob"),
        ],
    )
