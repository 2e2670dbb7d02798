"""MODELS and DEFAULT_MODEL, parsed and checked without touching any provider SDK.

Settings validate through here at start, so a bad entry stops the process with a message
naming it; the registry builds its specs from the same entries.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from backend.providers.base import Capability, ModelSpec
from backend.providers.model_entries import parse_model_entries

LOCAL_MODEL_ID = "smollm2-135m-instruct"


class ProviderKind(StrEnum):
    OPENAI = "openai"
    COHERE = "cohere"
    LOCAL = "local"


class ModelEntry(BaseModel):
    """One MODELS entry. `base_url`/`api_key` override the provider-wide settings, e.g. to
    serve DeepSeek and OpenAI side by side."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    provider: ProviderKind
    upstream: str = ""
    context_window: int = Field(default=8192, gt=0)
    max_output: int = Field(default=1024, gt=0)
    prompt_price: float = Field(default=0.0, ge=0)
    completion_price: float = Field(default=0.0, ge=0)
    capabilities: list[Capability] = Field(default_factory=lambda: [Capability.TEXT], min_length=1)
    base_url: str = ""
    api_key: str = ""


class RegistryError(ValueError):
    """MODELS or DEFAULT_MODEL is unusable; the message names the culprit."""


DEFAULT_LOCAL_ENTRY = ModelEntry(
    id=LOCAL_MODEL_ID,
    provider=ProviderKind.LOCAL,
    upstream="SmolLM2-135M-Instruct",
    # Below LOCAL_MODEL_CONTEXT (2048): prompts are budgeted in cl100k tokens, and SmolLM2's
    # tokenizer needs somewhat more for the same text.
    context_window=1536,
    max_output=512,
)


def parse_entries(raw: str) -> list[ModelEntry]:
    """MODELS as validated entries; empty means the built-in local model."""
    return parse_model_entries(raw, "MODELS", ModelEntry, RegistryError) or [DEFAULT_LOCAL_ENTRY]


def spec_of(entry: ModelEntry) -> ModelSpec:
    return ModelSpec(
        id=entry.id,
        provider=entry.provider.value,
        upstream=entry.upstream or entry.id,
        context_window=entry.context_window,
        max_output=entry.max_output,
        prompt_price=entry.prompt_price,
        completion_price=entry.completion_price,
        capabilities=frozenset(entry.capabilities),
    )


def default_id_of(entries: list[ModelEntry], default_model: str) -> str:
    """DEFAULT_MODEL, or the first text model listed."""
    ids = ", ".join(e.id for e in entries)
    chosen = default_model or next(
        (e.id for e in entries if Capability.TEXT in e.capabilities), entries[0].id
    )
    entry = next((e for e in entries if e.id == chosen), None)
    if entry is None:
        raise RegistryError(f"DEFAULT_MODEL '{chosen}' is not in MODELS; choose one of {ids}")
    if Capability.TEXT not in entry.capabilities:
        raise RegistryError(f"DEFAULT_MODEL '{chosen}' lacks the text capability")
    return chosen
