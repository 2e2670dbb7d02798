"""RAG first token: what retrieval and prompt assembly add to the first token of an answer
over knowledge bases, next to the same turn on the same assistant without datasets.

- **Corpus.** The synthetic chunks of bench/retrieval_speed.py (Zipf vocabulary, 60-180
  words, random 384-dim unit vectors), indexed straight into the embedded store as one
  dataset of the benchmark user (documents of 1,000 chunks): no model embeds them.
- **Models.** The question is embedded by the fake OpenAI-compatible embedding server of
  the tests (hashed bag of words, 384 dimensions, over a real socket), and the answer
  comes from the fake OpenAI-compatible chat server (echo, no pacing): both stand in for
  remote providers, so what is left is Sluice's own work.
- **What is timed**, one turn at a time, RAG and plain turns alternating: from the web
  process's assembly of the turn (`knowledge_turns.history_room`/`planned` around the
  same `fit` as the OpenAI-compatible path; a plain turn only `fit`) through the chat
  worker's knowledge step (`workers.jobs.knowledge.prepare`: embed the question, both
  legs, fusion, threshold, the best `top_n` chunks fitted with tiktoken into
  `{knowledge}`) to the first token read from the provider. What both turns share
  (reservation, the task row, the queue, the stream relay) is left out: it adds the same
  to both (see bench/bench_streaming.py for it).
- **One core.** BLAS threads are limited to one, as in bench/retrieval_speed.py.

Usage: python -m bench.bench_rag [--chunks 10000 100000] [--turns 100] [--top-k 1024]
Target: added p50 <= 40 ms at 100k chunks on the embedded store.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from contextlib import aclosing  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bench.retrieval_speed import Corpus  # noqa: E402
from tests.support import fake_embeddings  # noqa: E402
from tests.support.fake_embeddings import fake_embedding_server  # noqa: E402
from tests.support.fake_openai import fake_openai_server  # noqa: E402

TARGET_MS = 40.0
CHAT_MODEL = "bench-echo"
EMBEDDING_MODEL = "bench-embed"
DIMENSION = 384
MAX_OUTPUT = 256


def configure(data_dir: Path, chat_url: str, embedding_url: str) -> None:
    """Settings through the environment, before anything reads them."""
    chat = {
        "id": CHAT_MODEL,
        "provider": "openai",
        "upstream": "echo",
        "base_url": chat_url,
        "context_window": 8192,
        "max_output": MAX_OUTPUT,
    }
    embedding = {
        "id": EMBEDDING_MODEL,
        "provider": "openai",
        "upstream": "fake-embed",
        "dimension": DIMENSION,
        "base_url": embedding_url,
        "api_key": "sk-fake",
    }
    os.environ.update(
        DATA_DIR=str(data_dir),
        DATABASE_URL="",
        SEARCH_STORE="embedded",
        MODELS=json.dumps([chat]),
        DEFAULT_MODEL=CHAT_MODEL,
        OPENAI_API_KEY="sk-fake",
        EMBEDDING_MODELS=json.dumps([embedding]),
        DEFAULT_EMBEDDING_MODEL=EMBEDDING_MODEL,
        LOG_LEVEL="WARNING",
    )


class StageClock:
    """Time spent in the retrieval service's stages, wrapped in place for the run."""

    STAGES = ("question_vector", "search_legs", "fuse", "document_names")

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {name: [] for name in self.STAGES}

    def install(self, store: object) -> None:
        from backend.search import retrieval

        for name in self.STAGES:
            owner = store if name == "search_legs" else retrieval
            setattr(owner, name, self.timed(name, getattr(owner, name)))

    def timed(self, name: str, call: Any) -> Any:
        samples = self.seconds[name]

        if asyncio.iscoroutinefunction(call):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await call(*args, **kwargs)
                finally:
                    samples.append(time.perf_counter() - started)

            return timed_async

        def timed_sync(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                samples.append(time.perf_counter() - started)

        return timed_sync

    def p50s(self) -> str:
        return ", ".join(
            f"{name} {percentiles(samples)[0]:.1f}" for name, samples in self.seconds.items()
        )

    def reset(self) -> None:
        for samples in self.seconds.values():
            samples.clear()


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(samples) * 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


async def run(sizes: Sequence[int], turns: int, top_k: int) -> None:
    from backend.database import close_database, migrate_database, open_database
    from backend.models import Assistant, Dataset, User
    from backend.providers.base import ChatMessage, ChatRequest, Delta, SamplingParams
    from backend.providers.embedding_registry import close_embeddings
    from backend.providers.registry import close_registry, get_model, provider_for
    from backend.providers.tokens import count_message_tokens
    from backend.search.stores import close_search_store, search_store
    from backend.services import knowledge_turns
    from backend.services.context import fit, preamble
    from backend.settings import get_settings
    from schemas.chats import DEFAULT_KNOWLEDGE_PROMPT
    from workers.jobs import knowledge

    settings = get_settings()
    await migrate_database(settings)
    await open_database(settings)
    user = await User.create(username="bench-rag")
    dataset = await Dataset.create(
        owner=user,
        name="bench",
        name_key="bench",
        embedding_model=EMBEDDING_MODEL,
        embedding_dimension=DIMENSION,
    )
    prompt = {
        "prompt": DEFAULT_KNOWLEDGE_PROMPT,
        "empty_response": "",
        "top_k": top_k,
        # Random vectors sit below any threshold: 0 keeps top_n chunks in every prompt.
        "similarity_threshold": 0.0,
    }
    llm = {"model_name": CHAT_MODEL, "max_tokens": MAX_OUTPUT}
    fields = dict(id="bench-kb", owner_id=user.id, name="kb", llm=llm, prompt=prompt)
    rag = Assistant(**fields, dataset_ids=[dataset.id], preset_messages=[])
    plain = Assistant(**{**fields, "id": "bench-plain"}, dataset_ids=[], preset_messages=[])
    spec = get_model(CHAT_MODEL)
    params = SamplingParams(max_tokens=MAX_OUTPUT)
    store = search_store()
    clock = StageClock()
    clock.install(store)
    corpus = Corpus(max(sizes))
    questions = [" ".join(terms) for terms, _ in corpus.queries(turns + 10)]

    async def first_token(request: ChatRequest) -> None:
        async with aclosing(provider_for(spec).stream(request)) as events:
            async for event in events:
                if isinstance(event, Delta) and event.text:
                    return

    async def plain_turn(question: str) -> float:
        started = time.perf_counter()
        asked = [ChatMessage(role="user", content=question)]
        messages = fit(preamble(plain), [], asked, spec, MAX_OUTPUT)
        count_message_tokens(messages)
        await first_token(ChatRequest(model=spec, messages=messages, params=params))
        return time.perf_counter() - started

    async def rag_turn(question: str) -> tuple[float, float, int]:
        started = time.perf_counter()
        wanted, reserved = await knowledge_turns.history_room(rag, spec, MAX_OUTPUT)
        head = preamble(rag, knowledge_turns.KNOWLEDGE_MARKER)
        asked = [ChatMessage(role="user", content=question)]
        fitted = fit(head, [], asked, spec, MAX_OUTPUT, reserved)
        messages, plan, _ = knowledge_turns.planned(fitted, rag, spec, MAX_OUTPUT, wanted)
        count_message_tokens(messages)
        searched = time.perf_counter()
        turn = await knowledge.prepare(ChatRequest(spec, messages, params), plan)
        step = time.perf_counter() - searched
        await first_token(turn.request)
        return time.perf_counter() - started, step, len(turn.reference.chunks)

    rows = []
    indexed = 0
    try:
        for size in sorted(sizes):
            started = time.perf_counter()
            for document_id, records in corpus.documents(indexed, size):
                owned = [replace(r, tenant_id=str(user.id), dataset_id=dataset.id) for r in records]
                await store.replace_document(document_id, owned)
            print(f"indexed {size - indexed} chunks in {time.perf_counter() - started:.0f} s")
            indexed = size
            for question in questions[:10]:  # warm-up: connections, the vector cache
                await rag_turn(question)
                await plain_turn(question)
            clock.reset()
            plain_samples, rag_samples, steps, given = [], [], [], []
            for question in questions[10:]:
                plain_samples.append(await plain_turn(question))
                total, step, count = await rag_turn(question)
                rag_samples.append(total)
                steps.append(step)
                given.append(count)
            rows.append((size, plain_samples, rag_samples, steps, given))
            report(size, plain_samples, rag_samples, steps, given)
            print(f"  retrieval stages p50 (ms): {clock.p50s()}", flush=True)
    finally:
        await close_registry()
        await close_embeddings()
        await close_search_store()
        await close_database()
    print("\nRAG first token (ms), embedded store, one turn at a time:")
    print("| chunks | plain p50 / p99 | RAG p50 / p99 | added p50 / p99 | knowledge step p50 |")
    print("| --- | --- | --- | --- | --- |")
    for size, plain_samples, rag_samples, steps, _ in rows:
        p50, p99 = percentiles(plain_samples)
        r50, r99 = percentiles(rag_samples)
        s50, _ = percentiles(steps)
        verdict = "met" if r50 - p50 <= TARGET_MS else "NOT met"
        print(
            f"| {size:,} | {p50:.1f} / {p99:.1f} | {r50:.1f} / {r99:.1f} | "
            f"{r50 - p50:.1f} / {r99 - p99:.1f} ({verdict}) | {s50:.1f} |"
        )


def report(
    size: int,
    plain: Sequence[float],
    rag: Sequence[float],
    steps: Sequence[float],
    given: Sequence[int],
) -> None:
    p50, _ = percentiles(plain)
    r50, _ = percentiles(rag)
    print(
        f"{size:,} chunks: plain p50 {p50:.1f} ms, RAG p50 {r50:.1f} ms "
        f"(added {r50 - p50:.1f} ms; knowledge step p50 {percentiles(steps)[0]:.1f} ms; "
        f"{np.mean(given):.1f} chunks in the prompt on average)",
        flush=True,
    )


async def main_async(sizes: Sequence[int], turns: int, top_k: int) -> None:
    # The fake answers its default dimension when the request names none, as ours doesn't.
    fake_embeddings.DIMENSION = DIMENSION
    with tempfile.TemporaryDirectory(prefix="bench-rag-") as folder:
        async with fake_openai_server() as chat, fake_embedding_server() as embeddings:
            configure(Path(folder), chat.base_url, embeddings.openai_base_url)
            await run(sizes, turns, top_k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument(
        "--top-k", type=int, default=1024, help="the assistant's top_k (RAGFlow's default 1024)"
    )
    args = parser.parse_args()
    asyncio.run(main_async(args.chunks, args.turns, args.top_k))


if __name__ == "__main__":
    main()
