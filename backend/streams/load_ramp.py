"""A wait that widens with load: the rule behind the relay's coalescing window and the
stream hub's linger.

Both trade a little latency for fewer, fuller events or reads once a process is busy:
the wait is `idle_seconds` up to `idle_load`, grows in proportion to the load, and
stays at `busy_seconds` from `busy_load` on. A busy wait no longer than the idle one
never shortens it.
"""

from __future__ import annotations


def load_ramp(
    load: int, *, idle_load: int, busy_load: int, idle_seconds: float, busy_seconds: float
) -> float:
    if load <= idle_load or busy_seconds <= idle_seconds:
        return idle_seconds
    if load >= busy_load:
        return busy_seconds
    share = (load - idle_load) / (busy_load - idle_load)
    return idle_seconds + (busy_seconds - idle_seconds) * share
