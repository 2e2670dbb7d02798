"""Embeddings over Cohere's v2 `embed` (the official SDK), float vectors.

Chunks are embedded with `input_type: search_document` and questions with
`search_query`, as Cohere's retrieval models require. Texts go in requests of at most
96, Cohere's limit per call. `dimension` is sent as `output_dimension` only when the
entry asks (embed-v4 accepts 256/512/1024/1536; older models reject it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cohere
import httpx
import numpy as np

from backend.providers import failures
from backend.providers.base import ProviderError
from backend.providers.cohere import translate
from backend.providers.embedding_input import cut_all
from backend.providers.embeddings import EmbeddingSpec, embedding_label, unit_rows

REQUEST_BATCH = 96


class CohereEmbeddingProvider:
    def __init__(
        self,
        spec: EmbeddingSpec,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        max_retries: int = 0,
        key_setting: str = "COHERE_API_KEY",
    ) -> None:
        self.spec = spec
        self.name = spec.id
        self.dimension = spec.dimension
        self.timeout = timeout
        self.max_retries = max_retries
        self.key_setting = key_setting
        self.label = embedding_label(spec)
        self.api_key = api_key
        self.http = httpx.AsyncClient(timeout=timeout)
        self.client = cohere.AsyncClientV2(
            api_key=api_key or "unset", base_url=base_url, timeout=timeout, httpx_client=self.http
        )

    async def embed(self, texts: Sequence[str], input_type: str) -> np.ndarray:
        if not self.api_key:
            raise failures.unauthorized(self.label, self.key_setting)
        extra: dict[str, Any] = (
            {"output_dimension": self.dimension} if self.spec.send_dimension else {}
        )
        parts = []
        texts = cut_all(list(texts), self.spec.max_input_tokens)
        for start in range(0, len(texts), REQUEST_BATCH):
            batch = list(texts[start : start + REQUEST_BATCH])
            try:
                response = await self.client.embed(
                    model=self.spec.upstream,
                    texts=batch,
                    input_type=input_type,
                    embedding_types=["float"],
                    request_options={"max_retries": self.max_retries},
                    **extra,
                )
                rows = response.embeddings.float_
            except ProviderError:
                raise
            except Exception as exc:
                raise translate(exc, self.label, self.timeout, self.key_setting) from exc
            parts.append(unit_rows(rows, self.dimension, len(batch), self.label))
        if not parts:
            return np.empty((0, self.dimension), dtype=np.float32)
        return np.concatenate(parts)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return await self.embed(texts, "search_document")

    async def embed_query(self, text: str) -> np.ndarray:
        return (await self.embed([text], "search_query"))[0]

    async def aclose(self) -> None:
        await self.http.aclose()
