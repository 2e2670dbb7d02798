"""What cosine an embedding model gives a question and an unrelated passage.

Models differ wildly here: all-MiniLM puts unrelated texts near 0, e5 near 0.75
(its cosines crowd 0.75..0.9 for anything), so a raw cosine cannot carry a threshold
that means one thing for every model: with e5 an off-topic question scores 0.74-0.78 against
every chunk and RAGFlow's 0.2 `similarity_threshold` turns nothing away. Retrieval
therefore reports `vector_similarity` calibrated to the model, `(cosine - baseline) /
(1 - baseline)` clipped to 0..1, with the baseline measured on the model itself: the
mean cosine between each probe below embedded as a question and every other probe
embedded as a passage. The probes are on unrelated topics in both languages Sluice's
analyzer knows, and have nothing to do with any evaluation set. Measured once per
process and model (ten question embeddings and one batch of passages), then cached.
"""

from __future__ import annotations

import logging
import weakref

import numpy as np

from backend.providers.base import ProviderError
from backend.providers.embedding_registry import embedding_provider

log = logging.getLogger("sluice.retrieval")

PROBES = (
    "How do I reset the password of my router?",
    "The recipe needs two eggs, flour and a cup of milk.",
    "Volcanic eruptions can change the climate for several years.",
    "The quarterly report shows revenue grew by eight percent.",
    "She practised the violin every evening before the concert.",
    "Which train goes to the airport after midnight?",
    "明天上海会下雨吗",
    "这家餐厅的红烧肉非常好吃。",
    "量子计算机利用叠加态进行运算。",
    "图书馆周末开放到晚上九点。",
)
# A model whose unrelated texts sit higher than this is not one calibration can rescue;
# capping keeps the scale from collapsing.
MAX_BASELINE = 0.9

# Keyed by the provider object, so a reconfigured registry (or a test's fake upstream
# under a familiar id) is measured afresh.
baselines: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    return matrix / norms


def unrelated_cosine(questions: np.ndarray, passages: np.ndarray) -> float:
    """Mean cosine of each question to every passage but its own, clamped to
    0..MAX_BASELINE."""
    cosines = unit_rows(questions) @ unit_rows(passages).T
    off_diagonal = cosines[~np.eye(len(cosines), dtype=bool)]
    return float(np.clip(off_diagonal.mean(), 0.0, MAX_BASELINE))


async def similarity_baseline(model_id: str) -> float:
    """The model's unrelated-question cosine (cached per process and provider; two
    concurrent first calls may both measure it, which is harmless)."""
    provider = embedding_provider(model_id)
    if (known := baselines.get(provider)) is not None:
        return known
    try:
        questions = np.stack([await provider.embed_query(text) for text in PROBES])
        passages = await provider.embed_documents(PROBES)
    except ProviderError as exc:
        # The question itself was just embedded, so this is a passing failure: this
        # search goes uncalibrated (raw cosines) rather than failing, and the next one
        # measures again.
        log.warning("calibrating embedding model %r failed (%s); using raw cosines", model_id, exc)
        return 0.0
    known = baselines[provider] = unrelated_cosine(questions, passages)
    return known
