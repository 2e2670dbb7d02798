"""The rerank model registry: the rerank models RERANK_MODELS configures and the
provider behind each (built on first use and reused, keeping its connection pool warm).

Rerank calls use RERANK_TIMEOUT_SECONDS, not PROVIDER_TIMEOUT_SECONDS: a user's search
waits on them, and a reranker that is slow is skipped (backend/search/rerankers.py).
"""

from __future__ import annotations

from backend.errors import BadRequest
from backend.providers.rerank import (
    RerankEntry,
    Reranker,
    RerankProviderKind,
    parse_rerank_entries,
)
from backend.settings import Settings, get_settings


class RerankRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.entries: dict[str, RerankEntry] = {
            entry.id: entry for entry in parse_rerank_entries(settings.rerank_models)
        }
        self.providers: dict[str, Reranker] = {}

    def get(self, model_id: str) -> RerankEntry:
        entry = self.entries.get(model_id)
        if entry is None:
            available = ", ".join(self.entries) or "none are configured (RERANK_MODELS)"
            raise BadRequest(
                f"Unknown rerank model '{model_id}'. Available rerank models: {available}"
            )
        return entry

    def provider(self, model_id: str) -> Reranker:
        entry = self.get(model_id)
        if model_id not in self.providers:
            self.providers[model_id] = self.build(entry)
        return self.providers[model_id]

    def build(self, entry: RerankEntry) -> Reranker:
        timeout = self.settings.rerank_timeout_seconds
        if entry.provider is RerankProviderKind.COHERE:
            from backend.providers.rerank_cohere import CohereReranker

            return CohereReranker(
                entry.id,
                entry.model,
                entry.base_url or self.settings.cohere_base_url,
                entry.api_key or self.settings.cohere_api_key,
                timeout=timeout,
                key_setting=(
                    f"the api_key of rerank model '{entry.id}' in RERANK_MODELS"
                    if entry.api_key
                    else "COHERE_API_KEY"
                ),
            )
        from backend.providers.rerank_http import HttpReranker

        return HttpReranker(entry.id, entry.model, entry.base_url, entry.api_key, timeout=timeout)

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        self.providers.clear()


_registry: RerankRegistry | None = None


def configure_rerankers(settings: Settings) -> RerankRegistry:
    """Install the registry for `settings` (at startup, or in tests)."""
    global _registry
    _registry = RerankRegistry(settings)
    return _registry


async def close_rerankers() -> None:
    if _registry is not None:
        await _registry.aclose()


def rerank_registry() -> RerankRegistry:
    if _registry is None:
        return configure_rerankers(get_settings())
    return _registry


def reranker(model_id: str) -> Reranker:
    """The provider of rerank model `model_id`; BadRequest (400) naming the available ones."""
    return rerank_registry().provider(model_id)
