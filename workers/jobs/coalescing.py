"""How long the relay gathers a generation's deltas into one token event, by load.

Every token event costs both processes a fixed amount (the worker's XADD, the web's
XREAD dispatch, an SSE frame through Quart, Hypercorn and the socket), whatever its
text. A lightly loaded worker can afford one event per token, and clients count on it
(RAGFlow's SDK shows each token; the suite's streaming tests read them one by one), so
the window stays `TASK_COALESCE_MS` while this process runs at most
`TASK_COALESCE_IDLE_GENERATIONS` generations. Beyond that it widens in proportion to
the generations running, up to `TASK_COALESCE_MAX_MS` at
`TASK_COALESCE_BUSY_GENERATIONS`: the CPU a token costs then falls as the load that
would saturate the process grows, and a reader still sees text arrive every few tens of
milliseconds, a steady flow (docs/streaming.md, "Relay").

The signal is the number of generations this worker process runs (its `Watch` knows
them): it is exact, free to read, the same on every machine, and it moves before the
process saturates, where a lag or backlog signal only moves once it already has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from backend.settings import Settings
from backend.streams.load_ramp import load_ramp


@dataclass(frozen=True)
class CoalesceWindow:
    """The rule: seconds of gathering after a token event, given the generations running."""

    idle_seconds: float
    busy_seconds: float
    idle_generations: int
    busy_generations: int

    @classmethod
    def from_settings(cls, settings: Settings) -> CoalesceWindow:
        return cls(
            idle_seconds=settings.task_coalesce_ms / 1000,
            busy_seconds=max(settings.task_coalesce_max_ms, settings.task_coalesce_ms) / 1000,
            idle_generations=settings.task_coalesce_idle_generations,
            busy_generations=settings.task_coalesce_busy_generations,
        )

    def seconds(self, generations: int) -> float:
        return load_ramp(
            generations,
            idle_load=self.idle_generations,
            busy_load=self.busy_generations,
            idle_seconds=self.idle_seconds,
            busy_seconds=self.busy_seconds,
        )

    def following(self, generations: Callable[[], int]) -> Callable[[], float]:
        """The window as the relay reads it before each gathering: the load of that moment."""
        return lambda: self.seconds(generations())
