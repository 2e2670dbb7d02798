"""The embedding model registry: EMBEDDING_MODELS parsing and fail-fast validation, the
always-available local model, lookups and provider reuse."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from backend.errors import BadRequest
from backend.providers import embedding_registry as registry_module
from backend.providers.embedding_cohere import CohereEmbeddingProvider
from backend.providers.embedding_local import LocalEmbeddingProvider
from backend.providers.embedding_openai import OpenAIEmbeddingProvider
from backend.providers.embedding_registry import (
    configure_embeddings,
    default_embedding_model,
    embedding_provider,
    get_embedding_model,
    list_embedding_models,
)
from backend.providers.embeddings import LOCAL_EMBEDDING_MODEL_ID, EmbeddingProviderKind
from backend.settings import Settings
from tests.support.fake_embeddings import DIMENSION, fake_embedding_server


def settings_with(entries: list[dict[str, Any]] | str, **overrides: Any) -> Settings:
    models = entries if isinstance(entries, str) else json.dumps(entries)
    return Settings(_env_file=None, embedding_models=models, **overrides)


@pytest.fixture(autouse=True)
def restore_registry() -> Iterator[None]:
    saved = registry_module._registry
    yield
    registry_module._registry = saved


def test_the_local_model_is_served_by_default() -> None:
    configure_embeddings(Settings(_env_file=None))
    assert [spec.id for spec in list_embedding_models()] == [LOCAL_EMBEDDING_MODEL_ID]
    spec = default_embedding_model()
    assert (spec.id, spec.provider, spec.dimension) == (
        LOCAL_EMBEDDING_MODEL_ID,
        EmbeddingProviderKind.LOCAL,
        384,
    )
    assert isinstance(embedding_provider(spec.id), LocalEmbeddingProvider)


def test_configured_models_are_served_beside_the_local_one() -> None:
    configure_embeddings(
        settings_with(
            [
                {
                    "id": "te3@openai",
                    "provider": "openai",
                    "upstream": "text-embedding-3-small",
                    "dimension": 1536,
                },
                {
                    "id": "embed-v4.0@cohere",
                    "provider": "cohere",
                    "dimension": 1024,
                    "send_dimension": True,
                },
            ],
            default_embedding_model="te3@openai",
        )
    )
    ids = [spec.id for spec in list_embedding_models()]
    assert ids == [LOCAL_EMBEDDING_MODEL_ID, "te3@openai", "embed-v4.0@cohere"]
    assert default_embedding_model().id == "te3@openai"
    cohere_spec = get_embedding_model("embed-v4.0@cohere")
    assert (cohere_spec.upstream, cohere_spec.dimension, cohere_spec.send_dimension) == (
        "embed-v4.0@cohere",
        1024,
        True,
    )
    assert isinstance(embedding_provider("te3@openai"), OpenAIEmbeddingProvider)
    assert isinstance(embedding_provider("embed-v4.0@cohere"), CohereEmbeddingProvider)
    assert embedding_provider("te3@openai") is embedding_provider("te3@openai")


def test_an_unknown_model_is_a_400_naming_the_available_ones() -> None:
    configure_embeddings(Settings(_env_file=None))
    with pytest.raises(BadRequest, match=f"Available embedding models: {LOCAL_EMBEDDING_MODEL_ID}"):
        get_embedding_model("bge-m3@nowhere")


@pytest.mark.parametrize(
    ("raw", "default", "message"),
    [
        ("not json", "", "EMBEDDING_MODELS is not valid JSON"),
        ('{"id": "x"}', "", "must be a JSON list"),
        ('[{"id": "x", "provider": "openai"}]', "", "dimension is required"),
        ('[{"id": "x", "provider": "magic", "dimension": 3}]', "", "entry 0 ('x') is invalid"),
        ('[{"id": "x", "provider": "local", "upstream": "bert"}]', "", "local upstream"),
        (
            '[{"id": "x", "provider": "openai", "dimension": 3},'
            ' {"id": "x", "provider": "cohere", "dimension": 3}]',
            "",
            "lists model id 'x' twice",
        ),
        ("", "ghost@openai", "DEFAULT_EMBEDDING_MODEL 'ghost@openai' is not an embedding model"),
    ],
)
def test_bad_configuration_stops_the_process_naming_the_culprit(
    raw: str, default: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        settings_with(raw, default_embedding_model=default)


async def test_an_entry_base_url_and_key_override_the_provider_settings() -> None:
    async with fake_embedding_server(api_key="entry-key") as fake:
        configure_embeddings(
            settings_with(
                [
                    {
                        "id": "e@openai",
                        "provider": "openai",
                        "dimension": DIMENSION,
                        "base_url": fake.openai_base_url,
                        "api_key": "entry-key",
                    },
                ],
                openai_base_url="http://127.0.0.1:9/v1",
                openai_api_key="global-key",
            )
        )
        vector = await embedding_provider("e@openai").embed_query("hello world")
        assert vector.shape == (DIMENSION,) and np.isclose(np.linalg.norm(vector), 1.0)
        await registry_module.close_embeddings()
