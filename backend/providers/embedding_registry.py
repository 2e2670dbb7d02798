"""The embedding model registry: which embedding models this deployment serves, and the
provider behind each (built on first use and reused, keeping connection pools warm and
the local model loaded once per process).

Configured by EMBEDDING_MODELS and DEFAULT_EMBEDDING_MODEL (`backend/providers/
embeddings.py` parses them); the built-in local model is always listed.
"""

from __future__ import annotations

from backend.errors import BadRequest
from backend.providers.embeddings import (
    EmbeddingEntry,
    EmbeddingProvider,
    EmbeddingProviderKind,
    EmbeddingSpec,
    check_default,
    parse_embedding_entries,
    spec_of,
)
from backend.settings import Settings, get_settings


class EmbeddingRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        entries = parse_embedding_entries(settings.embedding_models)
        self.entries: dict[str, EmbeddingEntry] = {entry.id: entry for entry in entries}
        self.specs = {entry.id: spec_of(entry) for entry in entries}
        self.default_id = check_default(entries, settings.default_embedding_model)
        self.providers: dict[str, EmbeddingProvider] = {}

    def ids(self) -> str:
        return ", ".join(self.specs)

    def get(self, model_id: str) -> EmbeddingSpec:
        spec = self.specs.get(model_id)
        if spec is None:
            raise BadRequest(
                f"Unknown embedding model '{model_id}'. Available embedding models: {self.ids()}"
            )
        return spec

    def provider(self, model_id: str) -> EmbeddingProvider:
        spec = self.get(model_id)
        if model_id not in self.providers:
            self.providers[model_id] = self.build(spec, self.entries[model_id])
        return self.providers[model_id]

    def build(self, spec: EmbeddingSpec, entry: EmbeddingEntry) -> EmbeddingProvider:
        settings = self.settings
        override = f"the api_key of embedding model '{spec.id}' in EMBEDDING_MODELS"
        timeout = settings.provider_timeout_seconds
        retries = settings.provider_max_retries
        if spec.provider is EmbeddingProviderKind.OPENAI:
            from backend.providers.embedding_openai import OpenAIEmbeddingProvider

            return OpenAIEmbeddingProvider(
                spec,
                entry.base_url or settings.openai_base_url,
                entry.api_key or settings.openai_api_key,
                timeout=timeout,
                max_retries=retries,
                key_setting=override if entry.api_key else "OPENAI_API_KEY",
            )
        if spec.provider is EmbeddingProviderKind.COHERE:
            from backend.providers.embedding_cohere import CohereEmbeddingProvider

            return CohereEmbeddingProvider(
                spec,
                entry.base_url or settings.cohere_base_url,
                entry.api_key or settings.cohere_api_key,
                timeout=timeout,
                max_retries=retries,
                key_setting=override if entry.api_key else "COHERE_API_KEY",
            )
        from backend.providers.embedding_local import LocalEmbeddingProvider

        return LocalEmbeddingProvider(
            spec.id,
            spec.upstream,
            threads=settings.local_embedding_threads,
            query_slots=settings.local_embedding_query_slots,
        )

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        self.providers.clear()


_registry: EmbeddingRegistry | None = None


def configure_embeddings(settings: Settings) -> EmbeddingRegistry:
    """Install the registry for `settings` (at startup, or in tests)."""
    global _registry
    _registry = EmbeddingRegistry(settings)
    return _registry


async def close_embeddings() -> None:
    """Close the providers' connection pools (and drop a loaded local model) at shutdown."""
    if _registry is not None:
        await _registry.aclose()


def embedding_registry() -> EmbeddingRegistry:
    if _registry is None:
        return configure_embeddings(get_settings())
    return _registry


def get_embedding_model(model_id: str) -> EmbeddingSpec:
    """The spec of `model_id`; BadRequest (400) naming the available models otherwise."""
    return embedding_registry().get(model_id)


def list_embedding_models() -> list[EmbeddingSpec]:
    return list(embedding_registry().specs.values())


def default_embedding_model() -> EmbeddingSpec:
    registry = embedding_registry()
    return registry.specs[registry.default_id]


def embedding_provider(model_id: str) -> EmbeddingProvider:
    return embedding_registry().provider(model_id)
