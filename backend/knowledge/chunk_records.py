"""From chunks to search-store records: stable chunk ids, what gets embedded, and
embedding in batches.

Chunk ids are derived from the document, the chunk's place and its content, never
random: a job delivered twice (or re-run after a crash) writes the same ids, and the
store's replace/upsert keeps one copy. A chunk added by hand gets an id from its
document and content, as RAGFlow's (xxhash of content + document id), so adding the
same text twice leaves one chunk. Ids are 32 lowercase hex characters, the public id
format every `<id:...>` path accepts.

A chunk with questions (a Q/A pair, or questions given by hand) is embedded by its
questions, so a user's question finds it by meaning ("matched on the question"); any
other chunk by its content.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from backend.knowledge.chunking import Chunk
from backend.models import Document
from backend.providers.embeddings import EmbeddingProvider
from backend.search.store import ChunkRecord

# Called after each batch with (chunks embedded so far, all of them).
BatchDone = Callable[[int, int], Awaitable[None]]


def stable_id(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def parsed_chunk_id(document_id: str, index: int, content: str) -> str:
    return stable_id(document_id, str(index), content)


def manual_chunk_id(document_id: str, content: str) -> str:
    return stable_id(document_id, "manual", content)


def embedding_text(content: str, questions: Sequence[str]) -> str:
    asked = [question for question in questions if question.strip()]
    return "\n".join(asked) if asked else content


def record_of(
    document: Document,
    chunk_id: str,
    content: str,
    *,
    token_count: int,
    questions: Sequence[str] = (),
    important_keywords: Sequence[str] = (),
    positions: Sequence[Sequence[int]] = (),
    vector: np.ndarray | None = None,
) -> ChunkRecord:
    return ChunkRecord(
        chunk_id=chunk_id,
        tenant_id=str(document.owner_id),
        dataset_id=document.dataset_id,
        document_id=document.id,
        document_name=document.name,
        content=content,
        important_keywords=tuple(important_keywords),
        questions=tuple(questions),
        positions=tuple(tuple(box) for box in positions),
        token_count=token_count,
        vector=vector,
        create_time=time.time(),
    )


def parsed_records(
    document: Document, chunks: Sequence[Chunk], vectors: np.ndarray
) -> list[ChunkRecord]:
    return [
        record_of(
            document,
            parsed_chunk_id(document.id, index, chunk.content),
            chunk.content,
            token_count=chunk.token_count,
            questions=chunk.questions,
            positions=chunk.positions,
            vector=vector,
        )
        for index, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
    ]


async def embed_in_batches(
    provider: EmbeddingProvider,
    texts: Sequence[str],
    batch_size: int,
    on_batch: BatchDone | None = None,
) -> np.ndarray:
    """(len(texts), dimension) float32 rows, `batch_size` texts per provider call so
    progress can be reported (and a cancel noticed) between batches."""
    rows: list[np.ndarray] = []
    done = 0
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        rows.append(await provider.embed_documents(batch))
        done += len(batch)
        if on_batch is not None:
            await on_batch(done, len(texts))
    if not rows:
        return np.empty((0, provider.dimension), dtype=np.float32)
    return np.concatenate(rows)
