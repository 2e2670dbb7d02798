"""The web process's one `StreamHub`, wired to the services it must not import itself.

A reader that hears nothing from a task asks whether the task's worker died; failing
such a task is a business rule (`services.task_recovery`), so the hub gets the check
from here, above both, rather than the streams layer calling up into services.
"""

from __future__ import annotations

from functools import partial

from quart import Quart

from backend.connections import blocking_read_ms
from backend.services.task_recovery import reap_if_dead
from backend.streams.hub import StreamHub

HUB_EXTENSION = "stream_hub"
# An idle hub re-issues its XREAD this often at most (less if the socket timeout is short).
HUB_BLOCK_SECONDS = 30.0


def hub_for(app: Quart) -> StreamHub:
    """The process's hub, started on first use: Redis is connected only once serving starts."""
    hub = app.extensions.get(HUB_EXTENSION)
    if hub is None:
        settings = app.config["SETTINGS"]
        redis = app.config["REDIS"]
        check = partial(reap_if_dead, redis, settings)
        block_ms = blocking_read_ms(settings, HUB_BLOCK_SECONDS)
        hub = StreamHub(redis, settings.redis_prefix, worker_check=check, block_ms=block_ms)
        app.extensions[HUB_EXTENSION] = hub
    return hub


async def stop_hub(app: Quart) -> None:
    hub = app.extensions.pop(HUB_EXTENSION, None)
    if hub is not None:
        await hub.stop()
