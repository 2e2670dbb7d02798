"""The rerank provider interface, and RERANK_MODELS parsed and checked.

A reranker scores (question, passage) pairs with a cross-encoder, which judges relevance
better than comparing two independently made embeddings, at the cost of one model call
per search. Two kinds serve it:

- `cohere`: Cohere's v2 rerank through the official SDK (`rerank-v3.5`-style models);
  `base_url`/`api_key` default to COHERE_BASE_URL/COHERE_API_KEY.
- `http`: any endpoint speaking the common `/rerank` shape that Jina, Xinference, vLLM
  and TEI-style servers share: `POST {base_url}/rerank` with
  `{model, query, documents, top_n}` answering `{results: [{index, relevance_score}]}`.
  `base_url` is required (e.g. `http://127.0.0.1:9997/v1`).

Configuration mirrors EMBEDDING_MODELS (docs/retrieval.md): a JSON list of entries
`{id, provider, upstream, base_url, api_key}`; a request's `rerank_id` names one. This
module imports no provider SDK: settings validate through it at start.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from math import isfinite
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.providers import failures
from backend.providers.model_entries import parse_model_entries


class Reranker(Protocol):
    name: str  # the id a request's rerank_id names

    async def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        """A relevance score for each document, in the documents' order (higher is more
        relevant). Raises ProviderError on failure."""
        ...

    async def aclose(self) -> None: ...


class RerankProviderKind(StrEnum):
    COHERE = "cohere"
    HTTP = "http"


class RerankEntry(BaseModel):
    """One RERANK_MODELS entry; `upstream` (the model name sent) defaults to `id`."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=255)
    provider: RerankProviderKind
    upstream: str = ""
    base_url: str = ""
    api_key: str = ""

    @model_validator(mode="after")
    def check_base_url(self) -> RerankEntry:
        if self.provider is RerankProviderKind.HTTP and not self.base_url:
            raise ValueError("base_url is required for http rerank models")
        return self

    @property
    def model(self) -> str:
        return self.upstream or self.id


class RerankConfigError(ValueError):
    """RERANK_MODELS is unusable; the message names the entry and what is wrong."""


def parse_rerank_entries(raw: str) -> list[RerankEntry]:
    return parse_model_entries(raw, "RERANK_MODELS", RerankEntry, RerankConfigError)


def scores_in_order(pairs: Sequence[tuple[int, float]], count: int, label: str) -> list[float]:
    """Upstream (index, score) pairs as one score per document in input order. A document
    the upstream left out (some servers cap `top_n`) scores below every scored one; an
    index out of range or a score that is not a finite number is a malformed answer."""
    scores = [float("-inf")] * count
    for index, score in pairs:
        if not isinstance(index, int) or not 0 <= index < count:
            raise failures.malformed(label, f"result index {index!r} is out of range")
        if isinstance(score, bool) or not isinstance(score, int | float) or not isfinite(score):
            raise failures.malformed(label, f"relevance_score {score!r} is not a number")
        scores[index] = float(score)
    floor = min((s for s in scores if s != float("-inf")), default=0.0)
    return [s if s != float("-inf") else min(floor, 0.0) - 1.0 for s in scores]


def rerank_label(model_id: str) -> str:
    return f"The rerank model '{model_id}'"
