"""The garbage collector's settings for a serving process, applied once it has started.

A streaming process allocates small objects at a high rate (a frame, a future, a timer
handle per event) and keeps a large heap from start-up (modules, models, pydantic
schemas, routes, the tokenizer) that lives as long as the process. With CPython's
defaults (a young collection every 700 net allocations, an older one every 10 of those)
objects are promoted before they die and every full collection walks the whole start-up
heap again: measured at 500 streams, the collector took 6 to 9% of the web and chat
worker processes' CPU, and a full collection stopped the event loop for ~100 ms
(bench/bench_garbage_collector.py).

So, once started, a process moves its heap out of the collector's sight (`gc.freeze`:
those objects are never scanned again; they are not freed by the collector, which they
never would have been) and collects its young generation every `GC_YOUNG_THRESHOLD`
net allocations. Reference counting still frees nearly everything at once; the
collector is only for cycles, and the threshold bounds how many of those wait.
"""

from __future__ import annotations

import gc

from backend.settings import Settings

# CPython's own default for the two older generations: collected every tenth younger one.
OLDER_GENERATIONS_RATIO = 10


def settle_after_start(settings: Settings) -> None:
    """Freeze the start-up heap and apply `GC_YOUNG_THRESHOLD` (0 keeps CPython's
    defaults, for comparing)."""
    if settings.gc_young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(settings.gc_young_threshold, OLDER_GENERATIONS_RATIO, OLDER_GENERATIONS_RATIO)
