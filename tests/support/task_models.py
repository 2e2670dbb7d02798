"""Model registry entries for the task lifecycle tests, priced so credits are visible."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from backend.providers.registry import close_registry, configure_registry
from backend.settings import Settings

CHEAP = "cheap-text"
VISION = "vision"
PRICEY = "pricey"
SLOW = "slow-text"
BROKEN = "broken"
DROPPING = "dropping"


def model_entries(base_url: str, slow_base_url: str | None = None) -> str:
    """MODELS JSON: text, vision and pricey models on `base_url`, failing ones by upstream
    name (the fake's `fail-<mode>`), and a slow model on `slow_base_url`."""

    def entry(model_id: str, upstream: str = "fake-gpt", **fields) -> dict:
        return {
            "id": model_id,
            "provider": "openai",
            "upstream": upstream,
            "base_url": base_url,
            "context_window": 4096,
            "max_output": 256,
            "prompt_price": 10,
            "completion_price": 20,
            **fields,
        }

    entries = [
        entry(CHEAP),
        entry(VISION, prompt_price=0, completion_price=0, capabilities=["text", "vision"]),
        entry(PRICEY, prompt_price=1000, completion_price=1000, max_output=1024),
        entry(BROKEN, upstream="fail-500"),
        entry(DROPPING, upstream="fail-drop"),
        entry(SLOW, base_url=slow_base_url or base_url, max_output=4000, context_window=8192),
    ]
    return json.dumps(entries)


def with_models(settings: Settings, base_url: str, slow_base_url: str | None = None) -> Settings:
    return settings.model_copy(
        update={
            "models": model_entries(base_url, slow_base_url),
            "default_model": CHEAP,
            "openai_api_key": "test-key",
            "provider_max_retries": 0,
        }
    )


@pytest.fixture
async def test_models(settings: Settings) -> AsyncIterator[Settings]:
    """The registry serves the test models (no upstream behind them) for one test."""
    configured = with_models(settings, "http://127.0.0.1:9/v1")
    configure_registry(configured)
    yield configured
    await close_registry()
    configure_registry(settings)
