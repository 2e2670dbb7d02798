"""Retrieval speed: p50/p99 latency of the keyword, vector and hybrid legs at 10k and
100k chunks, on the embedded store and on Elasticsearch, next to a bare NumPy floor.

- **Corpus.** Synthetic, so no model is needed: chunks of 60-180 words drawn from a
  Zipf-distributed vocabulary of 30,000 made-up words (a few words in most chunks, most
  words in few, as in real text), each with a random 384-dimension unit vector (e5-small's
  size). One tenant, one dataset, documents of 1,000 chunks: the worst case for the
  embedded store, whose vector leg scores a whole dataset's matrix.
- **Queries.** 3-8 words from the same distribution (so some are stop-word-like) and a
  random unit vector, searched with FUSION_WINDOW (64) candidates per leg: what
  `retrieve` asks the store for on a first page without a reranker (`leg_depth`).
  `--top-k 64 1024` measures RAGFlow's default `top_k` as a store depth too.
- **What is timed**, one query at a time after a warm-up: keyword = `keyword_search`,
  vector = `vector_search`, hybrid = `search_legs` (both legs, one snapshot or one
  `_msearch`) + `fusion.fuse` (adaptive default). The floor is the vector leg's bare
  arithmetic over the same vectors: one float32 matrix-vector product and a top-k
  `argpartition` + sort, no store, measured right after each store's legs at that size
  and depth (samples pooled over stores), so each leg's multiple of the floor compares
  like loads on a shared machine.
- **Filling.** The embedded store through `replace_document`, a document at a time;
  Elasticsearch in bulk, refreshed once (`bench/elasticsearch_fill.py`: the same
  documents, without a refresh per request). Its segment count is printed.
- **One core.** BLAS threads are limited to one (set before NumPy loads when this module
  is the entry point), so the floor and the embedded store use what a deployment with
  one core per process has. Elasticsearch runs in its own JVM, however it is configured.

Usage: python -m bench.retrieval_speed [--sizes 10000 100000] [--queries 200] [--top-k K ...]
       [--elasticsearch-url URL]   (default $ELASTICSEARCH_URL; without it, embedded only)
       [--embedded-only | --elasticsearch-only]
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
from backend.search.retrieval import FUSION_WINDOW  # noqa: E402
from backend.search.store import ChunkRecord, SearchFilter, SearchStore  # noqa: E402
from bench.elasticsearch_fill import bulk_fill, drop_indices, segment_count  # noqa: E402

DIMENSION = 384
VOCABULARY = 30_000
DOCUMENT_SIZE = 1_000
TOP_K = FUSION_WINDOW
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


def floor_samples(matrix: np.ndarray, queries: Sequence[np.ndarray], top_k: int) -> list[float]:
    """The bare vector leg: matrix-vector product, top-k partition, sort of the k."""
    samples = []
    k = min(top_k, len(matrix))
    for query in [*queries[:WARMUP], *queries]:
        started = time.perf_counter()
        scores = matrix @ query
        best = np.argpartition(-scores, k - 1)[:k]
        best[np.argsort(-scores[best])]
        samples.append(time.perf_counter() - started)
    return samples[len(queries[:WARMUP]) :]


async def measure(store: SearchStore, queries: list[tuple[list[str], np.ndarray]], top_k: int):
    """{leg: samples} for keyword, vector and hybrid over `queries`, in turn."""
    cycle = {"keyword": iter(queries * 2), "vector": iter(queries * 2), "hybrid": iter(queries * 2)}

    async def keyword() -> None:
        terms, _ = next(cycle["keyword"])
        await store.keyword_search(terms, SCOPE, top_k)

    async def vector() -> None:
        _, query = next(cycle["vector"])
        await store.vector_search(query, SCOPE, top_k)

    async def hybrid() -> None:
        terms, query = next(cycle["hybrid"])
        by_keyword, by_vector = await store.search_legs(terms, query, SCOPE, top_k)
        fuse(by_keyword, by_vector, query, terms)

    count = len(queries)
    return {
        "keyword": await timed(keyword, count),
        "vector": await timed(vector, count),
        "hybrid": await timed(hybrid, count),
    }


async def fill(store: SearchStore, corpus: Corpus, start: int, stop: int) -> float:
    started = time.perf_counter()
    documents = corpus.documents(start, stop)
    if isinstance(store, ElasticsearchSearchStore):
        await bulk_fill(store, (r for _, records in documents for r in records), DIMENSION)
    else:
        for document_id, records in documents:
            await store.replace_document(document_id, records)
    return time.perf_counter() - started


Row = tuple[str, int, int, str, float, float]  # store, chunks, top_k, leg, p50, p99
Floors = dict[tuple[int, int], list[float]]  # (chunks, top_k): floor samples


async def measure_store(
    name: str,
    store: SearchStore,
    corpus: Corpus,
    queries: list[tuple[list[str], np.ndarray]],
    plan: tuple[Sequence[int], Sequence[int]],
    floors: Floors,
) -> list[Row]:
    """Fill `store` up to each size in turn and time each depth there, each followed by
    the floor at that size and depth (its samples added to `floors`)."""
    sizes, depths = plan
    rows: list[Row] = []
    indexed = 0
    for size in sorted(sizes):
        seconds = await fill(store, corpus, indexed, size)
        print(f"{name}: indexed {size - indexed} chunks in {seconds:.0f} s", flush=True)
        if isinstance(store, ElasticsearchSearchStore):
            print(f"  searching {await segment_count(store, DIMENSION)} segments", flush=True)
        indexed = size
        for top_k in depths:
            for leg, samples in (await measure(store, queries, top_k)).items():
                rows.append((name, size, top_k, leg, *percentiles(samples)))
                print(f"  {size:>7} k {top_k:>5} {leg:8} p50 {rows[-1][4]:7.2f} ms", flush=True)
            floor = floor_samples(corpus.vectors[:size], [q for _, q in queries], top_k)
            floors.setdefault((size, top_k), []).extend(floor)
            print(f"  {size:>7} k {top_k:>5} floor    p50 {percentiles(floor)[0]:7.2f} ms")
    return rows


async def run(
    sizes: Sequence[int],
    query_count: int,
    elasticsearch_url: str | None,
    embedded: bool = True,
    depths: Sequence[int] = (TOP_K,),
) -> None:
    corpus = Corpus(max(sizes))
    queries = corpus.queries(query_count)
    rows: list[Row] = []
    floors: Floors = {}
    stores: list[tuple[str, Callable[[Path], SearchStore]]] = []
    if embedded:
        stores.append(("embedded", lambda tmp: EmbeddedSearchStore(tmp / "search.sqlite3")))
    if elasticsearch_url:
        prefix = f"sluice-bench-{uuid.uuid4().hex[:8]}"
        url = elasticsearch_url
        stores.append(("elasticsearch", lambda tmp: ElasticsearchSearchStore(url, prefix=prefix)))
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in stores:
            store = build(Path(tmp))
            try:
                rows += await measure_store(name, store, corpus, queries, (sizes, depths), floors)
            finally:
                if isinstance(store, ElasticsearchSearchStore):
                    await drop_indices(store)
                await store.close()
    for (size, top_k), samples in floors.items():
        rows.append(("numpy floor", size, top_k, "vector", *percentiles(samples)))
    report(rows)


# The target: embedded hybrid p50 <= 25 ms and <= 3x the floor, at 100k chunks.
TARGET_SIZE = 100_000


def report(rows: list[Row]) -> None:
    """The table, each leg's p50 as a multiple of the floor, and the embedded target."""
    print(f"\nRetrieval latency, {DIMENSION}-dim vectors (ms; top_k = candidates per leg)")
    print(f"| {'store':13} | {'chunks':>7} | {'top_k':>5} | {'leg':8} | {'p50':>7} | {'p99':>7} |")
    print(f"|{'-' * 15}|{'-' * 8}:|{'-' * 6}:|{'-' * 10}|{'-' * 8}:|{'-' * 8}:|")
    for store, size, top_k, leg, p50, p99 in sorted(rows, key=lambda r: (r[1], r[2], r[0], r[3])):
        print(f"| {store:13} | {size:>7} | {top_k:>5} | {leg:8} | {p50:7.2f} | {p99:7.2f} |")
    floors = {(r[1], r[2]): r[4] for r in rows if r[0] == "numpy floor"}
    for store, size, top_k, leg, p50, _ in sorted(rows):
        floor = floors.get((size, top_k))
        if store == "numpy floor" or not floor:
            continue
        print(f"{store} {leg} p50 at {size}, top_k {top_k}: {p50 / floor:.1f}x the floor")
        if store == "embedded" and leg == "hybrid" and size == TARGET_SIZE:
            verdict = "meets" if p50 <= 25 and p50 <= 3 * floor else "misses"
            print(f"  target at {size} (hybrid <= 25 ms and <= 3x the floor): {verdict}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval_speed")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--top-k", type=int, nargs="+", default=[TOP_K], help="candidates per leg (several: each)"
    )
    parser.add_argument("--elasticsearch-url", default=os.environ.get("ELASTICSEARCH_URL"))
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--embedded-only", action="store_true")
    only.add_argument("--elasticsearch-only", action="store_true")
    args = parser.parse_args(argv)
    if args.embedded_only:
        args.elasticsearch_url = None
    if args.elasticsearch_only and not args.elasticsearch_url:
        parser.error("--elasticsearch-only needs --elasticsearch-url or $ELASTICSEARCH_URL")
    embedded = not args.elasticsearch_only
    asyncio.run(run(args.sizes, args.queries, args.elasticsearch_url, embedded, args.top_k))


if __name__ == "__main__":
    main()
