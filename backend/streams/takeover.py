"""Ending a delivery whose client came back on another connection ("takeover").

A phone that changes network leaves a half-open connection: the server keeps writing
into it and keeps the stream's lease, so the client's reconnect would be refused (409)
until the answer ends. A reader that resumes with an entry id of the stream proves it
is the client that was reading, so it takes the lease at once (`TaskStream.seize_lease`)
and announces the new lease on one Redis pub/sub channel. Every web process listens on
that channel and ends its own deliveries of the task that no longer hold the lease.
If an announcement is lost (Redis reconnecting), the replaced delivery still ends at
its next lease refresh, a third of `STREAM_LEASE_SECONDS` later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from redis.asyncio import Redis

from backend.constants import stream_takeover_channel
from backend.settings import Settings
from backend.streams.channel_subscriber import ChannelSubscriber
from backend.streams.task_stream import START, TaskStream, text

log = logging.getLogger("sluice.streams")

LEASE_POLL_SECONDS = 0.05
SUBSCRIBE_TIMEOUT_SECONDS = 2.0


class Replaceable(Protocol):
    """A delivery of one task's stream, holding the lease `lease`."""

    @property
    def task_id(self) -> str: ...

    @property
    def lease(self) -> str: ...

    def supersede(self) -> None: ...


class Takeovers:
    """This process's deliveries by task, ended when another reader takes their lease."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.channel = stream_takeover_channel(prefix)
        self.deliveries: dict[str, set[Replaceable]] = {}
        self.subscriber = ChannelSubscriber(
            redis, self.channel, self.dispatch, name="stream takeover channel"
        )

    async def watch(self, delivery: Replaceable) -> None:
        """Follow announcements for `delivery`'s task; waits for Redis to confirm the
        subscription, so no announcement made after it can be missed."""
        self.deliveries.setdefault(delivery.task_id, set()).add(delivery)
        if not await self.subscriber.wait_subscribed(SUBSCRIBE_TIMEOUT_SECONDS):
            log.warning("takeover channel not subscribed yet; relying on lease refresh")

    def unwatch(self, delivery: Replaceable) -> None:
        deliveries = self.deliveries.get(delivery.task_id)
        if deliveries is not None:
            deliveries.discard(delivery)
            if not deliveries:
                del self.deliveries[delivery.task_id]

    async def announce(self, task_id: str, lease: str) -> None:
        """Tell every process that `lease` now holds `task_id`'s stream."""
        await self.redis.publish(self.channel, f"{task_id} {lease}")

    def dispatch(self, data: bytes | str) -> None:
        task_id, _, lease = text(data).partition(" ")
        for delivery in list(self.deliveries.get(task_id, ())):
            if delivery.lease != lease:
                delivery.supersede()

    async def stop(self) -> None:
        await self.subscriber.stop()
        self.deliveries.clear()


async def wait_for_lease(stream: TaskStream, settings: Settings) -> str | None:
    """Take the lease, waiting briefly for a reader that just dropped to let go of it."""
    deadline = time.monotonic() + settings.stream_lease_wait_seconds
    while True:
        lease = await stream.acquire_lease(settings.stream_lease_seconds)
        if lease is not None or time.monotonic() >= deadline:
            return lease
        await asyncio.sleep(LEASE_POLL_SECONDS)


async def take_lease(
    stream: TaskStream, last_event_id: str | None, takeovers: Takeovers, settings: Settings
) -> str | None:
    """The stream's lease for this reader, or None if another reader holds it.

    A resume from an entry of this very stream, by its owner, is the client coming back
    (often from a connection that went half-open without a disconnect): it takes the
    lease over at once and the delivery holding it ends. So does a resume from `0-0`,
    the start: a client that dropped before its first `id:` (right after the opening
    frame of a POST) has no entry id, and asks for the whole stream again. A reader
    without a resume point (a second tab) waits briefly for a reader that just dropped,
    then is refused, and so is one whose id is not in this stream.
    """
    if last_event_id == START or (
        last_event_id is not None and await stream.has_entry(last_event_id)
    ):
        lease, replaced = await stream.seize_lease(settings.stream_lease_seconds)
        if replaced:
            await takeovers.announce(stream.task_id, lease)
        return lease
    return await wait_for_lease(stream, settings)
