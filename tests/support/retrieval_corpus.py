"""Datasets whose chunks are written straight into a live stack's search store, for the
retrieval tests: the dataset and its documents are made over HTTP (so SQL has them,
owned by the caller), the chunks indexed directly (no parsing, so a test builds exactly
the corpus it reasons about, in milliseconds)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from backend.knowledge.chunk_records import stable_id
from backend.search.embedded import EmbeddedSearchStore
from backend.search.store import ChunkRecord
from tests.support.fake_embeddings import fake_vector
from tests.support.knowledge import MULTIPART, multipart

# Vectors for a document's chunk texts (None: not embedded), or an awaitable of them.
Embed = Callable[[list[str]], np.ndarray | Awaitable[np.ndarray] | None]


def fake_embed(texts: list[str]) -> np.ndarray:
    """The fake upstream's vectors (`fake-embed@openai`), as the ingest worker stores them."""
    rows = np.asarray([fake_vector(text, 8) for text in texts], dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@dataclass
class Corpus:
    dataset_id: str
    documents: dict[str, str] = field(default_factory=dict)  # name -> id
    chunks: dict[str, str] = field(default_factory=dict)  # content -> chunk id


async def indexed_dataset(
    http: httpx.AsyncClient,
    search_db: Path,
    owner_id: int,
    documents: dict[str, list[str]],
    *,
    embed: Embed = fake_embed,
    **dataset_fields: object,
) -> Corpus:
    """A dataset of the caller with one document per name, whose chunks are `documents[name]`."""
    name = f"kb-{time.monotonic_ns()}"
    created = await http.post("/api/v1/datasets", json={"name": name, **dataset_fields})
    assert created.status_code == 201, created.text
    corpus = Corpus(created.json()["data"]["id"])
    files = [(doc_name, b"indexed directly") for doc_name in documents]
    uploaded = await http.post(
        f"/api/v1/datasets/{corpus.dataset_id}/documents",
        content=multipart(files),
        headers={"Content-Type": MULTIPART},
    )
    assert uploaded.status_code == 201, uploaded.text
    corpus.documents = {d["name"]: d["id"] for d in uploaded.json()["data"]}
    store = EmbeddedSearchStore(search_db)
    await store.open()
    try:
        for doc_name, texts in documents.items():
            document_id = corpus.documents[doc_name]
            vectors = embed(texts) if texts else None
            if inspect.isawaitable(vectors):
                vectors = await vectors
            records = []
            for index, text in enumerate(texts):
                chunk_id = stable_id(document_id, str(index), text)
                corpus.chunks[text] = chunk_id
                records.append(
                    ChunkRecord(
                        chunk_id=chunk_id,
                        tenant_id=str(owner_id),
                        dataset_id=corpus.dataset_id,
                        document_id=document_id,
                        document_name=doc_name,
                        content=text,
                        important_keywords=("kw",) if index == 0 else (),
                        positions=((index + 1, 0, 10, 0, 10),),
                        token_count=len(text.split()),
                        vector=None if vectors is None else vectors[index],
                        create_time=time.time(),
                    )
                )
            await store.replace_document(document_id, records)
    finally:
        await store.close()
    return corpus
