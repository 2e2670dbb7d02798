"""A serving process freezes its start-up heap and collects its young generation less
often (backend/garbage_collector.py); 0 keeps CPython's defaults."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from backend.garbage_collector import OLDER_GENERATIONS_RATIO, settle_after_start
from backend.settings import Settings
from tests.support.live_server import process_env


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


# A web app started in a process of its own (a second app in this one would start
# Tortoise twice): what its collector is set to once it serves.
SERVED_APP = """
import asyncio, gc, json
from backend.app import create_app
from backend.settings import Settings

async def main():
    app = create_app(Settings())
    async with app.test_app():
        print(json.dumps([gc.get_threshold()[0], gc.get_freeze_count()]))

asyncio.run(main())
"""


async def test_the_web_app_settles_once_started(settings: Settings) -> None:
    env = {**process_env(settings), "GC_YOUNG_THRESHOLD": "23456"}
    command = [sys.executable, "-c", SERVED_APP]
    served = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=120
    )
    assert served.returncode == 0, served.stderr[-3000:]
    threshold, frozen = json.loads(served.stdout.strip().splitlines()[-1])
    assert threshold == 23_456
    assert frozen > 0
