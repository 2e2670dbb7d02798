"""The calibration baseline of an embedding model (backend/providers/embedding_baseline.py):
measured once per provider, and a failing measurement degrades to raw cosines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from backend.providers import embedding_baseline
from backend.providers.base import ProviderError, ProviderErrorCode


class Probe:
    """A provider whose vectors share one direction (cosine 0.6 between any two texts)
    and which can be made to fail."""

    def __init__(self) -> None:
        self.failing = False
        self.calls = 0

    def vector(self, text: str) -> np.ndarray:
        unique = np.zeros(len(embedding_baseline.PROBES) + 1)
        unique[1 + embedding_baseline.PROBES.index(text)] = 0.8
        unique[0] = 0.6
        return unique

    async def embed_query(self, text: str) -> np.ndarray:
        self.calls += 1
        if self.failing:
            raise ProviderError(ProviderErrorCode.UNAVAILABLE, "down for a moment")
        return self.vector(text)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vector(text) for text in texts])


async def test_measured_once_and_a_failure_is_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probe = Probe()
    monkeypatch.setattr(embedding_baseline, "embedding_provider", lambda model_id: probe)

    probe.failing = True
    assert await embedding_baseline.similarity_baseline("m") == 0.0  # raw cosines, no error
    probe.failing = False
    assert await embedding_baseline.similarity_baseline("m") == pytest.approx(0.36)
    calls = probe.calls
    assert await embedding_baseline.similarity_baseline("m") == pytest.approx(0.36)
    assert probe.calls == calls  # cached
