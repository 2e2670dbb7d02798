"""How long the stream hub's reader waits after a reply before its next XREAD, by load.

Each XREAD is re-issued with every key its reader follows (a few hundred) and wakes the
loop to dispatch what it carried, so under load fewer, fuller replies cost the web
process less per event. A reply that carried the entries of a few streams means a
light load: the reader lingers the hub's `LINGER_SECONDS` (3 ms), which keeps the added
latency on later tokens small. A reply that carried many streams' entries means many
busy streams: the reader lingers longer, in proportion, up to `BUSY_LINGER_SECONDS`,
so the next reply gathers more. The first token is not concerned at light load (a new
stream's wake is followed at once) and at most 10 ms later under heavy load.
"""

from __future__ import annotations

from backend.streams.load_ramp import load_ramp

# At most this many streams in a reply: the idle linger.
IDLE_STREAMS = 8
# From this many streams in a reply on: the busy linger.
BUSY_STREAMS = 64
BUSY_LINGER_SECONDS = 0.010


def linger_after(streams: int, idle_seconds: float) -> float:
    """Seconds to wait after a reply that carried entries of `streams` streams."""
    return load_ramp(
        streams,
        idle_load=IDLE_STREAMS,
        busy_load=BUSY_STREAMS,
        idle_seconds=idle_seconds,
        busy_seconds=BUSY_LINGER_SECONDS,
    )
