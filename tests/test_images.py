"""Image generation over the OpenAI-compatible images API, against the fake upstream."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from backend.errors import ApiError, BadGateway, BadRequest, TooManyRequests
from backend.providers import images
from backend.providers import registry as registry_module
from backend.providers.images import ImageGenerationNotConfigured, generate_image
from backend.providers.registry import configure_registry
from backend.settings import Settings
from tests.support.fake_openai import FakeOpenAIServer, fake_openai_server

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def isolated() -> Iterator[None]:
    saved = registry_module._registry
    yield
    registry_module._registry = saved
    images._clients.clear()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with fake_openai_server(api_key="img-key") as server:
        yield server


def image_entry(model_id: str, upstream: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "provider": "openai",
        "upstream": upstream,
        "capabilities": ["image_generation"],
    }


def configured(
    fake: FakeOpenAIServer, models: list[dict[str, Any]] | None = None, **extra: Any
) -> Settings:
    settings = Settings(
        _env_file=None,
        models=json.dumps(models or []),
        image_base_url=fake.base_url,
        image_api_key="img-key",
        provider_timeout_seconds=0.5,
        **extra,
    )
    configure_registry(settings)
    return settings


async def test_not_configured_is_a_503_saying_what_to_set() -> None:
    settings = Settings(_env_file=None)
    configure_registry(settings)
    with pytest.raises(ImageGenerationNotConfigured) as caught:
        await generate_image("a cat", None, 1024, 1024, settings)
    assert caught.value.status == 503
    assert "IMAGE_API_KEY" in caught.value.message


async def test_generates_a_base64_image_with_the_configured_model(fake: FakeOpenAIServer) -> None:
    settings = configured(fake, image_model="fake-image")
    encoded = await generate_image("a cat on a mat", None, 1024, 768, settings)
    assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)
    sent = fake.stats.requests[-1]
    assert sent.path == "/v1/images/generations"
    assert sent.headers["authorization"] == "Bearer img-key"
    body = sent.json()
    assert body["model"] == "fake-image"
    assert body["prompt"] == "a cat on a mat"
    assert body["size"] == "1024x768"
    assert body["response_format"] == "b64_json"


async def test_openai_settings_are_the_fallback(fake: FakeOpenAIServer) -> None:
    settings = Settings(_env_file=None, openai_base_url=fake.base_url, openai_api_key="img-key")
    configure_registry(settings)
    encoded = await generate_image("a dog", None, 512, 512, settings)
    assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)
    assert fake.stats.requests[-1].json()["model"] == settings.image_model


async def test_image_models_in_the_registry_are_used(fake: FakeOpenAIServer) -> None:
    models = [
        {"id": "chat", "provider": "openai"},
        {
            "id": "painter",
            "provider": "openai",
            "upstream": "dall-e-3",
            "capabilities": ["image_generation"],
        },
        {
            "id": "sketcher",
            "provider": "openai",
            "upstream": "dall-e-2",
            "capabilities": ["image_generation"],
        },
    ]
    settings = configured(fake, models)
    await generate_image("first listed", None, 256, 256, settings)
    assert fake.stats.requests[-1].json()["model"] == "dall-e-3"
    await generate_image("chosen", "sketcher", 256, 256, settings)
    assert fake.stats.requests[-1].json()["model"] == "dall-e-2"


async def test_text_model_or_unknown_model_is_a_bad_request(fake: FakeOpenAIServer) -> None:
    models = [
        {"id": "chat", "provider": "openai"},
        image_entry("painter", "painter"),
    ]
    settings = configured(fake, models)
    with pytest.raises(BadRequest, match=r"cannot generate images\. Image models: painter"):
        await generate_image("x", "chat", 256, 256, settings)
    with pytest.raises(BadRequest, match="Unknown model 'nope'"):
        await generate_image("x", "nope", 256, 256, settings)
    assert fake.stats.requests == []


@pytest.mark.parametrize(
    ("upstream", "error", "status", "hint"),
    [
        ("fail-401", BadGateway, 502, "IMAGE_API_KEY"),
        ("fail-429", TooManyRequests, 429, "after 7 s"),
        ("fail-400", BadRequest, 400, "rejected the request"),
        ("fail-500", BadGateway, 502, "unavailable"),
        ("fail-hang", ApiError, 504, "did not answer"),
    ],
)
async def test_upstream_failures_become_http_errors(
    fake: FakeOpenAIServer, upstream: str, error: type[ApiError], status: int, hint: str
) -> None:
    settings = configured(fake, image_model=upstream)
    with pytest.raises(error) as caught:
        await generate_image("x", None, 256, 256, settings)
    assert caught.value.status == status
    assert hint in caught.value.message
