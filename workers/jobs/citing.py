"""After an answer over knowledge bases: insert `[ID:n]` where the model cited nothing.

The matching itself is `backend/search/citations.py`; this gathers what it needs: the
sentences embedded with the datasets' embedding model, the chunks' stored vectors
(embedded again only for a chunk the store returns without one), and the model's
unrelated-text cosine to calibrate against. A failure here (the embedding provider
down, the store unreachable) leaves the answer as the model wrote it: citations are a
help, never a reason to lose an answer.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from backend.models import Dataset
from backend.providers.embedding_baseline import similarity_baseline, unit_rows
from backend.providers.embedding_registry import embedding_provider
from backend.search import citations
from backend.search.fusion import calibrated
from backend.search.stores import search_store
from backend.services.task_outcomes import Answer
from backend.settings import Settings
from schemas.events import Reference, ReferenceChunk

log = logging.getLogger("sluice.tasks")


async def chunk_vectors(model_id: str, chunks: list[ReferenceChunk]) -> np.ndarray:
    """The chunks' stored vectors, in order; any the store lacks are embedded now."""
    store = search_store()
    vectors: list[np.ndarray | None] = []
    for chunk in chunks:
        record = await store.get_chunk(chunk.id, chunk.document_id)
        vectors.append(None if record is None else record.vector)
    missing = [i for i, vector in enumerate(vectors) if vector is None]
    if missing:
        embedded = await embedding_provider(model_id).embed_documents(
            [chunks[i].content for i in missing]
        )
        for i, vector in zip(missing, embedded, strict=True):
            vectors[i] = vector
    return np.stack([np.asarray(v, dtype=np.float64) for v in vectors])


async def cited_text(text: str, reference: Reference) -> str:
    sentences = citations.sentences(text)
    if not sentences:
        return text
    dataset = await Dataset.get_or_none(id=reference.chunks[0].dataset_id)
    if dataset is None:
        return text
    model_id = dataset.embedding_model
    provider = embedding_provider(model_id)
    asked = np.stack([await provider.embed_query(s.text) for s in sentences])
    given = await chunk_vectors(model_id, reference.chunks)
    cosines = unit_rows(asked) @ unit_rows(given).T
    vector = calibrated(cosines, await similarity_baseline(model_id))
    similarity = citations.hybrid_similarity(
        vector, [s.text for s in sentences], [c.content for c in reference.chunks]
    )
    return citations.with_citations(text, sentences, citations.chosen(similarity))


async def with_citations(
    answer: Answer, reference: Reference, plan: dict[str, Any], settings: Settings
) -> Answer:
    """`answer` with citations inserted, when the setting, the assistant (quotes shown)
    and the answer (it cites nothing, chunks were given) call for them."""
    if not (settings.auto_citations and plan.get("show_quote") and reference.chunks):
        return answer
    if not answer.text.strip() or citations.has_citations(answer.text):
        return answer
    try:
        text = await cited_text(answer.text, reference)
    except Exception:
        log.warning("inserting citations failed; the answer is kept as written", exc_info=True)
        return answer
    if text == answer.text:
        return answer
    return dataclasses.replace(answer, text=text, revised=True)
