"""A cancelled Redis command stays cancelled (backend/connections.py).

With a socket timeout set, redis-py wrote each command under `asyncio.wait_for`, which on
Python 3.11 returns normally when a cancel arrives just as the write completes: the
caller's `task.cancel()` said True and the task carried on. An SSE request cancelled by
its client's disconnect while it subscribed then kept waiting for events, holding the
stream's lease until its next heartbeat (seen as test_sse_asgi failing under load).
"""

from __future__ import annotations

import asyncio

from backend.connections import redis_pool
from backend.settings import Settings


async def test_a_cancel_at_any_point_of_a_command_is_never_lost(settings: Settings) -> None:
    redis = redis_pool(settings)
    assert redis.connection_pool.connection_kwargs["socket_timeout"]  # the case at stake
    try:
        await redis.ping()
        outcomes: dict[str, int] = {"cancelled": 0, "finished first": 0}
        # Cancel after 0, 1, 2 ... loop turns: one of them lands between the write's end
        # and the command's resumption, where wait_for lost it.
        for turns in range(8):
            for _ in range(25):
                command = asyncio.create_task(redis.set("cancel-probe", "1"))
                for _ in range(turns):
                    await asyncio.sleep(0)
                if not command.cancel():
                    outcomes["finished first"] += 1
                    continue
                try:
                    await command
                except asyncio.CancelledError:
                    outcomes["cancelled"] += 1
                else:
                    raise AssertionError(f"cancel() was accepted after {turns} turns, then lost")
        assert outcomes["cancelled"] > 0, outcomes
        # The pool is still sound: connections cut mid-command were dropped, not reused.
        assert await redis.get("cancel-probe") == b"1"
        assert await redis.ping()
    finally:
        await redis.aclose()
