"""Retrieval speed: p50/p99 latency of the keyword, vector and hybrid legs at 10k and
100k chunks, on the embedded store and on Elasticsearch, next to a bare NumPy floor.

- **Corpus.** Synthetic, so no model is needed: chunks of 60-180 words drawn from a
  Zipf-distributed vocabulary of 30,000 made-up words (a few words in most chunks, most
  words in few, as in real text), each with a random 384-dimension unit vector (e5-small's
  size). One tenant, one dataset, documents of 1,000 chunks: the worst case for the
  embedded store, whose vector leg scores a whole dataset's matrix.
- **Queries.** 3-8 words from the same distribution (so some are stop-word-like) and a
  random unit vector, searched with `top_k` 1024 candidates per leg (RAGFlow's default,
  what `POST /api/v1/retrieval` asks the store for).
- **What is timed**, one query at a time after a warm-up: keyword = `keyword_search`,
  vector = `vector_search`, hybrid = `search_legs` (both legs, one snapshot or one
  `_msearch`) + `fusion.fuse` (adaptive default). The floor is the vector leg's bare
  arithmetic over the same vectors in the same run: one float32 matrix-vector product
  and a top-k `argpartition` + sort, no store.
- **One core.** BLAS threads are limited to one (set before NumPy loads when this module
  is the entry point), so the floor and the embedded store use what a deployment with
  one core per process has. Elasticsearch runs in its own JVM, however it is configured.

Usage: python -m bench.retrieval_speed [--sizes 10000 100000] [--queries 200]
       [--elasticsearch-url URL]   (default $ELASTICSEARCH_URL; without it, embedded only)
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Awaitable, Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from backend.search.analyzer import query_terms  # noqa: E402
from backend.search.elasticsearch_store import ElasticsearchSearchStore  # noqa: E402
from backend.search.embedded import EmbeddedSearchStore  # noqa: E402
from backend.search.fusion import fuse  # noqa: E402
from backend.search.store import ChunkRecord, SearchFilter, SearchStore  # noqa: E402

DIMENSION = 384
VOCABULARY = 30_000
DOCUMENT_SIZE = 1_000
TOP_K = 1024
WARMUP = 10
SCOPE = SearchFilter("bench", dataset_ids=["ds-bench"])


class Corpus:
    """Deterministic synthetic chunks and queries (see the module docstring)."""

    def __init__(self, size: int, seed: int = 3) -> None:
        rng = np.random.default_rng(seed)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        words: dict[str, None] = {}
        while len(words) < VOCABULARY:
            words["".join(rng.choice(letters, size=int(rng.integers(2, 11))))] = None
        self.words = np.array(list(words))
        weights = 1.0 / np.arange(1, VOCABULARY + 1) ** 1.05
        self.weights = weights / weights.sum()
        self.rng = rng
        self.vectors = self.unit_rows(size)
        self.size = size

    def unit_rows(self, count: int) -> np.ndarray:
        rows = self.rng.normal(size=(count, DIMENSION)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def text(self, shortest: int, longest: int) -> str:
        count = int(self.rng.integers(shortest, longest + 1))
        return " ".join(self.rng.choice(self.words, size=count, p=self.weights))

    def documents(self, start: int, stop: int) -> list[tuple[str, list[ChunkRecord]]]:
        """Chunks start..stop (whole documents of DOCUMENT_SIZE)."""
        documents = []
        for first in range(start, stop, DOCUMENT_SIZE):
            document_id = f"doc-{first // DOCUMENT_SIZE:04d}"
            records = [
                ChunkRecord(
                    chunk_id=f"c{index:07d}",
                    tenant_id="bench",
                    dataset_id="ds-bench",
                    document_id=document_id,
                    document_name=f"{document_id}.txt",
                    content=self.text(60, 180),
                    vector=self.vectors[index],
                    create_time=1_700_000_000.0,
                )
                for index in range(first, min(first + DOCUMENT_SIZE, stop))
            ]
            documents.append((document_id, records))
        return documents

    def queries(self, count: int) -> list[tuple[list[str], np.ndarray]]:
        vectors = self.unit_rows(count)
        return [(query_terms(self.text(3, 8)), vectors[i]) for i in range(count)]


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(samples) * 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


async def timed(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    for _ in range(min(WARMUP, count)):
        await call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


def floor_samples(matrix: np.ndarray, queries: Sequence[np.ndarray]) -> list[float]:
    """The bare vector leg: matrix-vector product, top-k partition, sort of the k."""
    samples = []
    for query in [*queries[:WARMUP], *queries]:
        started = time.perf_counter()
        scores = matrix @ query
        best = np.argpartition(-scores, TOP_K - 1)[:TOP_K]
        best[np.argsort(-scores[best])]
        samples.append(time.perf_counter() - started)
    return samples[WARMUP:]


async def measure(store: SearchStore, queries: list[tuple[list[str], np.ndarray]]):
    """{leg: samples} for keyword, vector and hybrid over `queries`, in turn."""
    cycle = {"keyword": iter(queries * 2), "vector": iter(queries * 2), "hybrid": iter(queries * 2)}

    async def keyword() -> None:
        terms, _ = next(cycle["keyword"])
        await store.keyword_search(terms, SCOPE, TOP_K)

    async def vector() -> None:
        _, query = next(cycle["vector"])
        await store.vector_search(query, SCOPE, TOP_K)

    async def hybrid() -> None:
        terms, query = next(cycle["hybrid"])
        by_keyword, by_vector = await store.search_legs(terms, query, SCOPE, TOP_K)
        fuse(by_keyword, by_vector, query, terms)

    count = len(queries)
    return {
        "keyword": await timed(keyword, count),
        "vector": await timed(vector, count),
        "hybrid": await timed(hybrid, count),
    }


async def fill(store: SearchStore, corpus: Corpus, start: int, stop: int) -> float:
    started = time.perf_counter()
    for document_id, records in corpus.documents(start, stop):
        await store.replace_document(document_id, records)
    return time.perf_counter() - started


async def run(sizes: Sequence[int], query_count: int, elasticsearch_url: str | None) -> None:
    corpus = Corpus(max(sizes))
    queries = corpus.queries(query_count)
    rows: list[tuple[str, int, str, float, float]] = []
    stores: list[tuple[str, Callable[[Path], SearchStore]]] = [
        ("embedded", lambda tmp: EmbeddedSearchStore(tmp / "search.sqlite3"))
    ]
    if elasticsearch_url:
        prefix = f"sluice-bench-{uuid.uuid4().hex[:8]}"
        url = elasticsearch_url
        stores.append(("elasticsearch", lambda tmp: ElasticsearchSearchStore(url, prefix=prefix)))
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in stores:
            store = build(Path(tmp))
            indexed = 0
            try:
                for size in sorted(sizes):
                    seconds = await fill(store, corpus, indexed, size)
                    print(f"{name}: indexed {size - indexed} chunks in {seconds:.0f} s", flush=True)
                    indexed = size
                    for leg, samples in (await measure(store, queries)).items():
                        rows.append((name, size, leg, *percentiles(samples)))
                        print(f"  {size:>7} {leg:8} p50 {rows[-1][3]:7.2f} ms", flush=True)
            finally:
                if isinstance(store, ElasticsearchSearchStore):
                    names = list(await store.client.indices.get(index=f"{store.prefix}-*"))
                    if names:
                        await store.client.indices.delete(index=",".join(names))
                await store.close()
    for size in sorted(sizes):
        floor = floor_samples(corpus.vectors[:size], [q for _, q in queries])
        rows.append(("numpy floor", size, "vector", *percentiles(floor)))
    report(rows)


def report(rows: list[tuple[str, int, str, float, float]]) -> None:
    print(f"\nRetrieval latency, top_k {TOP_K} per leg, {DIMENSION}-dim vectors (ms)")
    print(f"| {'store':13} | {'chunks':>7} | {'leg':8} | {'p50':>7} | {'p99':>7} |")
    print(f"|{'-' * 15}|{'-' * 9}:|{'-' * 10}|{'-' * 8}:|{'-' * 8}:|")
    for store, size, leg, p50, p99 in sorted(rows, key=lambda r: (r[1], r[0], r[2])):
        print(f"| {store:13} | {size:>7} | {leg:8} | {p50:7.2f} | {p99:7.2f} |")
    for size in sorted({r[1] for r in rows}):
        floor = [r[3] for r in rows if r[0] == "numpy floor" and r[1] == size]
        hybrid = [r[3] for r in rows if r[0] == "embedded" and r[1] == size and r[2] == "hybrid"]
        if floor and hybrid:
            verdict = "meets" if hybrid[0] <= 25 and hybrid[0] <= 3 * floor[0] else "misses"
            print(
                f"embedded hybrid p50 at {size}: {hybrid[0]:.1f} ms = {hybrid[0] / floor[0]:.1f}x "
                f"the floor ({floor[0]:.1f} ms); target <= 25 ms and <= 3x: {verdict}"
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval_speed")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=TOP_K, help="candidates per leg")
    parser.add_argument("--elasticsearch-url", default=os.environ.get("ELASTICSEARCH_URL"))
    parser.add_argument("--embedded-only", action="store_true")
    args = parser.parse_args(argv)
    globals()["TOP_K"] = args.top_k
    if args.embedded_only:
        args.elasticsearch_url = None
    asyncio.run(run(args.sizes, args.queries, args.elasticsearch_url))


if __name__ == "__main__":
    main()
