"""The model registry: MODELS parsing and fail-fast validation, lookups, provider reuse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from backend.errors import BadRequest
from backend.providers import registry as registry_module
from backend.providers.base import (
    Capability,
    ChatMessage,
    ChatRequest,
    Delta,
    Usage,
)
from backend.providers.catalog import LOCAL_MODEL_ID
from backend.providers.cohere import CohereProvider
from backend.providers.local_llama import LocalLlamaProvider
from backend.providers.openai_compatible import OpenAICompatibleProvider
from backend.providers.registry import (
    configure_registry,
    default_model,
    get_model,
    list_models,
    provider_for,
)
from backend.settings import Settings
from tests.support.fake_cohere import fake_cohere_server
from tests.support.fake_http import token_text
from tests.support.fake_openai import fake_openai_server


def entry(model_id: str, provider: str = "openai", **fields: Any) -> dict[str, Any]:
    return {"id": model_id, "provider": provider, **fields}


def settings_with(entries: list[dict[str, Any]] | str, **overrides: Any) -> Settings:
    models = entries if isinstance(entries, str) else json.dumps(entries)
    return Settings(_env_file=None, models=models, **overrides)


@pytest.fixture(autouse=True)
def restore_registry() -> Iterator[None]:
    saved = registry_module._registry
    yield
    registry_module._registry = saved


def test_default_registry_is_the_free_local_model() -> None:
    configure_registry(Settings(_env_file=None))
    assert [spec.id for spec in list_models()] == [LOCAL_MODEL_ID]
    spec = default_model()
    assert spec.id == LOCAL_MODEL_ID
    assert spec.provider == "local"
    assert (spec.prompt_price, spec.completion_price) == (0, 0)
    assert isinstance(provider_for(spec), LocalLlamaProvider)


def test_empty_list_also_means_the_local_model() -> None:
    configure_registry(settings_with([]))
    assert default_model().id == LOCAL_MODEL_ID


def test_entries_become_specs_with_defaults_and_capabilities() -> None:
    configure_registry(
        settings_with(
            [
                entry("painter", capabilities=["image_generation"], upstream="dall-e-3"),
                entry(
                    "gpt-4o",
                    upstream="gpt-4o-2024-08-06",
                    context_window=128000,
                    max_output=4096,
                    prompt_price=2.5,
                    completion_price=10,
                    capabilities=["text", "vision"],
                ),
                entry("command-r", "cohere"),
            ]
        )
    )
    assert [spec.id for spec in list_models()] == ["painter", "gpt-4o", "command-r"]
    gpt = get_model("gpt-4o")
    assert gpt.upstream == "gpt-4o-2024-08-06"
    assert (gpt.context_window, gpt.max_output) == (128000, 4096)
    assert (gpt.prompt_price, gpt.completion_price) == (2.5, 10)
    assert gpt.capabilities == frozenset({Capability.TEXT, Capability.VISION})
    command = get_model("command-r")
    assert command.upstream == "command-r"
    assert command.capabilities == frozenset({Capability.TEXT})
    # The first text model is the default, not the image-only one listed first.
    assert default_model().id == "gpt-4o"


def test_default_model_setting_picks_the_default() -> None:
    configure_registry(settings_with([entry("a"), entry("b")], default_model="b"))
    assert default_model().id == "b"


def test_unknown_model_is_a_bad_request_listing_the_available_ones() -> None:
    configure_registry(settings_with([entry("alpha"), entry("beta")]))
    with pytest.raises(BadRequest) as caught:
        get_model("gamma")
    assert "gamma" in caught.value.message
    assert "alpha, beta" in caught.value.message


@pytest.mark.parametrize(
    ("models", "default", "expected"),
    [
        ("{not json", "", "MODELS is not valid JSON"),
        ('{"id": "x"}', "", "MODELS must be a JSON list"),
        (json.dumps([entry("ok"), entry("weird", "mystery")]), "", "entry 1 ('weird')"),
        (json.dumps([entry("neg", prompt_price=-1)]), "", "prompt_price"),
        (json.dumps([entry("cap", capabilities=["telepathy"])]), "", "capabilities"),
        (json.dumps([entry("typo", contxt_window=10)]), "", "contxt_window"),
        (json.dumps([{"provider": "openai"}]), "", "id"),
        (json.dumps([entry("twin"), entry("twin")]), "", "'twin' twice"),
        (json.dumps([entry("a")]), "missing", "DEFAULT_MODEL 'missing' is not in MODELS"),
        (
            json.dumps([entry("paint", capabilities=["image_generation"])]),
            "paint",
            "lacks the text capability",
        ),
    ],
)
def test_bad_configuration_fails_at_start_naming_the_problem(
    models: str, default: str, expected: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, models=models, default_model=default)
    assert expected in str(caught.value)


def test_bad_models_in_the_environment_stop_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELS", json.dumps([entry("broken", "nope")]))
    with pytest.raises(ValidationError, match="'broken'"):
        Settings(_env_file=None)


def test_providers_are_shared_per_endpoint() -> None:
    configure_registry(
        settings_with(
            [
                entry("one"),
                entry("two"),
                entry("elsewhere", base_url="http://127.0.0.1:9/v1"),
                entry("co", "cohere"),
            ],
            openai_api_key="k",
        )
    )
    one = provider_for(get_model("one"))
    assert isinstance(one, OpenAICompatibleProvider)
    assert provider_for(get_model("two")) is one
    assert provider_for(get_model("elsewhere")) is not one
    assert isinstance(provider_for(get_model("co")), CohereProvider)


async def test_registry_models_stream_from_their_configured_upstreams() -> None:
    async with (
        fake_openai_server(tokens=3, api_key="openai-key") as openai_fake,
        fake_openai_server(tokens=2, api_key="deepseek-key") as deepseek_fake,
        fake_cohere_server(tokens=4, api_key="cohere-key") as cohere_fake,
    ):
        current = configure_registry(
            settings_with(
                [
                    entry("gpt", upstream="fake-gpt"),
                    entry(
                        "deepseek",
                        upstream="fake-gpt",
                        base_url=deepseek_fake.base_url,
                        api_key="deepseek-key",
                    ),
                    entry("command", "cohere", upstream="command-r"),
                ],
                openai_base_url=openai_fake.base_url,
                openai_api_key="openai-key",
                cohere_base_url=cohere_fake.base_url,
                cohere_api_key="cohere-key",
            )
        )
        answers = {}
        for model_id in ("gpt", "deepseek", "command"):
            spec = get_model(model_id)
            request = ChatRequest(spec, [ChatMessage("user", "hi")])
            answers[model_id] = [e async for e in provider_for(spec).stream(request)]
        await current.aclose()

    for model_id, count in (("gpt", 3), ("deepseek", 2), ("command", 4)):
        events = answers[model_id]
        assert events[:-1] == [Delta(token_text(i)) for i in range(count)]
        assert isinstance(events[-1], Usage)
        assert events[-1].completion_tokens == count
    assert len(openai_fake.stats.requests) == 1
    assert len(deepseek_fake.stats.requests) == 1
    assert len(cohere_fake.stats.requests) == 1


async def test_auth_failure_names_the_per_model_key() -> None:
    async with fake_openai_server(api_key="right") as fake:
        current = configure_registry(
            settings_with([entry("ds", base_url=fake.base_url, api_key="wrong")])
        )
        spec = get_model("ds")
        with pytest.raises(Exception) as caught:
            [
                e
                async for e in provider_for(spec).stream(
                    ChatRequest(spec, [ChatMessage("user", "x")])
                )
            ]
        await current.aclose()
    assert "the api_key of model 'ds' in MODELS" in str(caught.value)
