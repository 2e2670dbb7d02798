"""The Elasticsearch store's documents: a `ChunkRecord` as an indexed `_source` and back.

The vector is stored as given (float32 values written as JSON numbers, which read back
bit-identical); the keyword field holds the analyzer's terms of content, important
keywords and questions, exactly what the embedded store gives FTS5.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.search.analyzer import analyzed_text
from backend.search.store import ChunkRecord


def source_of(record: ChunkRecord, generation: str, seq: int) -> dict[str, Any]:
    source: dict[str, Any] = {
        "chunk_id": record.chunk_id,
        "tenant_id": record.tenant_id,
        "dataset_id": record.dataset_id,
        "document_id": record.document_id,
        "generation": generation,
        "document_name": record.document_name,
        "content": record.content,
        "search_terms": analyzed_text(
            "\n".join([record.content, *record.important_keywords, *record.questions])
        ),
        "important_keywords": list(record.important_keywords),
        "questions": list(record.questions),
        "positions": [list(box) for box in record.positions],
        "available": record.available,
        "token_count": record.token_count,
        "create_time": record.create_time,
        "seq": seq,
        "dimension": 0,
    }
    if record.vector is not None:
        vector = np.asarray(record.vector, dtype=np.float32)
        if vector.ndim != 1 or vector.size == 0 or not np.all(np.isfinite(vector)):
            raise ValueError("A chunk vector must be a non-empty 1-D array of finite floats")
        source["vector"] = vector.tolist()
        source["dimension"] = int(vector.size)
    return source


def record_of(source: dict[str, Any]) -> ChunkRecord:
    vector = source.get("vector")
    return ChunkRecord(
        chunk_id=source["chunk_id"],
        tenant_id=source["tenant_id"],
        dataset_id=source["dataset_id"],
        document_id=source["document_id"],
        document_name=source["document_name"],
        content=source["content"],
        important_keywords=tuple(source["important_keywords"]),
        questions=tuple(source["questions"]),
        positions=tuple(tuple(box) for box in source["positions"]),
        available=source["available"],
        token_count=source["token_count"],
        vector=None if vector is None else np.asarray(vector, dtype=np.float32),
        create_time=source["create_time"],
    )
