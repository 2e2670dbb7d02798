"""Rerank over the common `/rerank` HTTP shape (Jina, Xinference, vLLM, TEI-style
servers): `POST {base_url}/rerank` with `{model, query, documents, top_n}`, answered by
`{results: [{index, relevance_score}, ...]}`. httpx directly: there is no SDK for a
shape many servers share, and the exchange is one small JSON request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from backend.providers import failures
from backend.providers.rerank import rerank_label, scores_in_order

KEY_SETTING = "the api_key of its RERANK_MODELS entry"


class HttpReranker:
    def __init__(
        self, name: str, model: str, base_url: str, api_key: str, *, timeout: float
    ) -> None:
        self.name = name
        self.model = model
        self.url = base_url.rstrip("/") + "/rerank"
        self.timeout = timeout
        self.label = rerank_label(name)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(timeout=timeout, headers=headers)

    async def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        if not documents:
            return []
        body = {
            "model": self.model,
            "query": query,
            "documents": list(documents),
            "top_n": len(documents),
        }
        try:
            response = await self.http.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise failures.from_transport(self.label, exc, self.timeout) or failures.unavailable(
                self.label, type(exc).__name__
            ) from exc
        if response.status_code != 200:
            raise failures.from_status(
                self.label, KEY_SETTING, response.status_code, detail_of(response), response.headers
            )
        try:
            results = response.json()["results"]
            pairs = [(item["index"], item["relevance_score"]) for item in results]
        except (ValueError, KeyError, TypeError) as exc:
            detail = "expected results of index and relevance_score"
            raise failures.malformed(self.label, detail) from exc
        return scores_in_order(pairs, len(documents), self.label)

    async def aclose(self) -> None:
        await self.http.aclose()


def detail_of(response: httpx.Response) -> str:
    """The upstream's error message, wherever its server family puts it."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        detail = body.get("detail") or body.get("message") or error
        if detail:
            return str(detail)[:200]
    return f"HTTP {response.status_code}"
