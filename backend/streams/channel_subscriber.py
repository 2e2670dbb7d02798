"""Following one Redis pub/sub channel for a process's life, through Redis outages.

The takeover channel (`takeover.py`) and the revocation channel
(`services/credential_watch.py`) each need one subscriber per web process that keeps
listening whatever happens to Redis: a failed read is retried with a capped back-off,
and redis-py re-subscribes on reconnecting. Announcements made while the channel was not
subscribed are lost, so `on_subscribed(after_loss=True)` tells the owner to catch up
from the stored state.

The read waits `POLL_SECONDS` at most, with its own timeout: a read without one would
use the pool's socket timeout (REDIS_SOCKET_TIMEOUT_SECONDS) and turn every quiet
interval into a "failure" and a re-subscription.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.outage import Outage

log = logging.getLogger("sluice.streams")

POLL_SECONDS = 1.0
FIRST_BACKOFF_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 2.0
REDIS_OUTAGES = (RedisConnectionError, RedisTimeoutError, OSError)

OnMessage = Callable[[bytes | str], None]
OnSubscribed = Callable[[bool], None]


class ChannelSubscriber:
    """Calls `on_message(data)` for each message on `channel`, and `on_subscribed(after_loss)`
    each time Redis confirms the subscription; `subscribed` is set while it holds."""

    def __init__(
        self,
        redis: Redis,
        channel: str,
        on_message: OnMessage,
        on_subscribed: OnSubscribed | None = None,
        *,
        name: str,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.name = name
        self.subscribed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        # Logged when a Redis outage starts and ends, not at every failed read.
        self.outage = Outage(f"Redis ({name})", log, max_delay=MAX_BACKOFF_SECONDS)

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.run(), name=self.name)

    async def wait_subscribed(self, seconds: float) -> bool:
        """Start if need be and wait up to `seconds` for the subscription; False if it
        did not come (Redis away): the caller then relies on its own fallback. Every
        stream's opening asks (twice: takeovers and the credential watch), nearly always
        subscribed already: that answer costs no timeout scope."""
        if self.subscribed.is_set() and self.task is not None:
            return True
        self.start()
        try:
            async with asyncio.timeout(seconds):
                await self.subscribed.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        pubsub: PubSub = self.redis.pubsub()
        lost = False
        try:
            while True:
                try:
                    if not pubsub.subscribed:
                        await pubsub.subscribe(self.channel)
                    message = await pubsub.get_message(timeout=POLL_SECONDS)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self.subscribed.clear()
                    lost = True
                    if isinstance(error, REDIS_OUTAGES):
                        await self.outage.failed(error)
                        continue
                    log.exception("%s failed; retrying in %.2fs", self.name, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    continue
                backoff = FIRST_BACKOFF_SECONDS
                self.outage.recovered()
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    self.subscribed.set()
                    if self.on_subscribed is not None:
                        self.on_subscribed(lost)
                    lost = False
                elif message["type"] == "message":
                    self.on_message(message["data"])
        finally:
            self.subscribed.clear()
            await asyncio.shield(pubsub.aclose())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
