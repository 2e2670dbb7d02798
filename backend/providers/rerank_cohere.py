"""Rerank over Cohere's v2 `rerank` (the official SDK), `rerank-v3.5`-style models.

Every candidate is sent with `top_n` equal to their number, so each gets a score.
Retries are off by default: a search waits on the reranker, and a reranker that fails
is skipped (the fused order stands) rather than retried into the user's wait.
"""

from __future__ import annotations

from collections.abc import Sequence

import cohere
import httpx

from backend.providers import failures
from backend.providers.base import ProviderError
from backend.providers.cohere import translate
from backend.providers.rerank import rerank_label, scores_in_order


class CohereReranker:
    def __init__(
        self,
        name: str,
        model: str,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        key_setting: str = "COHERE_API_KEY",
    ) -> None:
        self.name = name
        self.model = model
        self.timeout = timeout
        self.key_setting = key_setting
        self.label = rerank_label(name)
        self.api_key = api_key
        self.http = httpx.AsyncClient(timeout=timeout)
        self.client = cohere.AsyncClientV2(
            api_key=api_key or "unset", base_url=base_url, timeout=timeout, httpx_client=self.http
        )

    async def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        if not self.api_key:
            raise failures.unauthorized(self.label, self.key_setting)
        if not documents:
            return []
        try:
            response = await self.client.rerank(
                model=self.model,
                query=query,
                documents=list(documents),
                top_n=len(documents),
                request_options={"max_retries": 0},
            )
            pairs = [(item.index, item.relevance_score) for item in response.results]
        except ProviderError:
            raise
        except Exception as exc:
            raise translate(exc, self.label, self.timeout, self.key_setting) from exc
        return scores_in_order(pairs, len(documents), self.label)

    async def aclose(self) -> None:
        await self.http.aclose()
