"""The load-adaptive coalescing window: its rule, and the relay reading it per gathering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from backend.providers.base import Delta, StreamEvent
from backend.settings import Settings
from workers.jobs.coalescing import CoalesceWindow
from workers.jobs.relay import Relay

RULE = CoalesceWindow(
    idle_seconds=0.004, busy_seconds=0.040, idle_generations=8, busy_generations=64
)


def test_the_window_stays_at_the_idle_one_up_to_the_idle_count() -> None:
    assert [RULE.seconds(n) for n in (0, 1, 5, 8)] == [0.004] * 4


def test_the_window_widens_in_proportion_between_idle_and_busy() -> None:
    assert RULE.seconds(36) == pytest.approx(0.022)  # half way: half the widening
    assert RULE.seconds(9) == pytest.approx(0.004 + 0.036 / 56)
    widths = [RULE.seconds(n) for n in range(0, 100)]
    assert widths == sorted(widths), "more load never narrows the window"


def test_the_window_is_bounded_by_the_busy_one() -> None:
    assert RULE.seconds(64) == pytest.approx(0.040)
    assert RULE.seconds(10_000) == pytest.approx(0.040)


def test_a_maximum_below_the_idle_window_never_narrows_it() -> None:
    fixed = CoalesceWindow(
        idle_seconds=0.004, busy_seconds=0.0, idle_generations=8, busy_generations=64
    )
    assert fixed.seconds(1000) == 0.004


def test_defaults_keep_four_ms_when_idle_and_reach_forty_under_load(settings: Settings) -> None:
    rule = CoalesceWindow.from_settings(settings)
    assert rule.seconds(1) == settings.task_coalesce_ms / 1000 == 0.004
    assert rule.seconds(settings.task_coalesce_busy_generations) == pytest.approx(0.040)
    raised = settings.model_copy(update={"task_coalesce_max_ms": 1.0})  # below the idle one
    assert CoalesceWindow.from_settings(raised).seconds(1000) == 0.004


def test_the_window_follows_the_load_of_the_moment() -> None:
    running = [1]
    window = RULE.following(lambda: running[0])
    assert window() == 0.004
    running[0] = 200
    assert window() == pytest.approx(0.040)


async def test_the_relay_reads_the_window_before_each_gathering() -> None:
    """Deltas 10 ms apart: one per event while the window is 0, several once it widens;
    the first token always alone, the text intact."""
    tokens = [f"t{i} " for i in range(30)]
    window = [0.0]
    sent: list[str] = []

    async def upstream() -> AsyncIterator[StreamEvent]:
        for index, token in enumerate(tokens):
            if index == 10:
                window[0] = 0.06  # the load rose: later gatherings wait longer
            await asyncio.sleep(0.01)
            yield Delta(token)

    async def send(text: str) -> None:
        sent.append(text)

    result = await Relay(upstream(), send, window=lambda: window[0]).run()
    assert "".join(sent) == "".join(tokens) == result.answer
    assert sent[:9] == tokens[:9], "at window 0 each delta went alone"
    widened = sent[9:]
    assert widened and all(len(text.split()) >= 2 for text in widened[:-1])
    assert len(sent) < 20
