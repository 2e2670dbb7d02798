"""The model registry: which models this deployment serves, and the provider behind each.

Configured by MODELS (a JSON list of entries) and DEFAULT_MODEL. With MODELS empty the
registry serves one free local model, so a fresh checkout chats with no key and no network.
Providers are built once per endpoint and reused, keeping connection pools warm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.errors import BadRequest
from backend.providers.base import ChatProvider, ModelSpec
from backend.providers.catalog import (
    ModelEntry,
    ProviderKind,
    default_id_of,
    parse_entries,
    spec_of,
)
from backend.providers.cohere import CohereProvider
from backend.providers.local_llama import LocalLlamaProvider, bundled_model_path
from backend.providers.openai_compatible import OpenAICompatibleProvider
from backend.settings import Settings, get_settings


@dataclass(frozen=True)
class Endpoint:
    kind: ProviderKind
    base_url: str
    api_key: str
    key_setting: str


def endpoint_of(entry: ModelEntry, settings: Settings) -> Endpoint:
    override = f"the api_key of model '{entry.id}' in MODELS"
    if entry.provider is ProviderKind.OPENAI:
        key_setting = override if entry.api_key else "OPENAI_API_KEY"
        base_url, api_key = settings.openai_base_url, settings.openai_api_key
    elif entry.provider is ProviderKind.COHERE:
        key_setting = override if entry.api_key else "COHERE_API_KEY"
        base_url, api_key = settings.cohere_base_url, settings.cohere_api_key
    else:
        return Endpoint(ProviderKind.LOCAL, settings.local_model_path, "", "")
    return Endpoint(
        entry.provider, entry.base_url or base_url, entry.api_key or api_key, key_setting
    )


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        entries = parse_entries(settings.models)
        self.specs = {entry.id: spec_of(entry) for entry in entries}
        self.endpoints = {entry.id: endpoint_of(entry, settings) for entry in entries}
        self.providers: dict[Endpoint, ChatProvider] = {}
        self.default_id = default_id_of(entries, settings.default_model)

    def ids(self) -> str:
        return ", ".join(self.specs)

    def get(self, model_id: str) -> ModelSpec:
        spec = self.specs.get(model_id)
        if spec is None:
            raise BadRequest(f"Unknown model '{model_id}'. Available models: {self.ids()}")
        return spec

    def provider_for(self, spec: ModelSpec) -> ChatProvider:
        endpoint = self.endpoints.get(spec.id)
        if endpoint is None:
            raise BadRequest(f"Unknown model '{spec.id}'. Available models: {self.ids()}")
        if endpoint not in self.providers:
            self.providers[endpoint] = self.build(endpoint)
        return self.providers[endpoint]

    def build(self, endpoint: Endpoint) -> ChatProvider:
        settings = self.settings
        timeout = settings.provider_timeout_seconds
        retries = settings.provider_max_retries
        if endpoint.kind is ProviderKind.OPENAI:
            return OpenAICompatibleProvider(
                endpoint.base_url,
                endpoint.api_key,
                timeout=timeout,
                max_retries=retries,
                key_setting=endpoint.key_setting,
            )
        if endpoint.kind is ProviderKind.COHERE:
            return CohereProvider(
                endpoint.base_url,
                endpoint.api_key,
                timeout=timeout,
                max_retries=retries,
                key_setting=endpoint.key_setting,
            )
        path = Path(endpoint.base_url) if endpoint.base_url else bundled_model_path()
        return LocalLlamaProvider(
            path,
            threads=settings.local_model_threads,
            context=settings.local_model_context,
            parallel=settings.local_model_parallel,
        )

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        self.providers.clear()


_registry: ModelRegistry | None = None


def configure_registry(settings: Settings) -> ModelRegistry:
    """Install the registry for `settings` (at startup, or in tests); raises RegistryError."""
    global _registry
    _registry = ModelRegistry(settings)
    return _registry


async def close_registry() -> None:
    """Close the providers' connection pools (and free a loaded local model) at shutdown."""
    if _registry is not None:
        await _registry.aclose()


def registry() -> ModelRegistry:
    if _registry is None:
        return configure_registry(get_settings())
    return _registry


def get_model(model_id: str) -> ModelSpec:
    return registry().get(model_id)


def list_models() -> list[ModelSpec]:
    return list(registry().specs.values())


def default_model() -> ModelSpec:
    current = registry()
    return current.specs[current.default_id]


def provider_for(spec: ModelSpec) -> ChatProvider:
    return registry().provider_for(spec)
