"""A serving process freezes its start-up heap and collects its young generation less
often (backend/garbage_collector.py); 0 keeps CPython's defaults."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from backend.app import create_app
from backend.garbage_collector import OLDER_GENERATIONS_RATIO, settle_after_start
from backend.settings import Settings


@pytest.fixture
def collector_state() -> Iterator[None]:
    """The test process's collector as it was, restored after the test."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settling_freezes_the_heap_and_raises_the_young_threshold(
    settings: Settings, collector_state: None
) -> None:
    gc.unfreeze()
    survivor = [object()]  # a start-up object: frozen, never scanned again
    settle_after_start(settings.model_copy(update={"gc_young_threshold": 12_345}))
    assert gc.get_threshold() == (12_345, OLDER_GENERATIONS_RATIO, OLDER_GENERATIONS_RATIO)
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(survivor)


def test_zero_keeps_cpython_defaults(settings: Settings, collector_state: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    settle_after_start(settings.model_copy(update={"gc_young_threshold": 0}))
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_the_product_default_is_raised() -> None:
    assert Settings(_env_file=None).gc_young_threshold > 700


async def test_the_web_app_settles_once_started(settings: Settings, collector_state: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    app = create_app(settings.model_copy(update={"gc_young_threshold": 23_456}))
    async with app.test_app():
        assert gc.get_threshold()[0] == 23_456
        assert gc.get_freeze_count() > 0
