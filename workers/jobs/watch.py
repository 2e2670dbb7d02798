"""One loop per chat worker process that watches every generation it runs.

It polls the cancel flags of all running tasks in one Redis round trip every
`task_cancel_poll_seconds` and refreshes their heartbeats every
`task_heartbeat_interval_seconds`, so the Redis cost does not grow with a round trip
per task per tick, and cancel takes effect even while the provider is silent.

It lives through a Redis outage (restart, failover, a pause past the socket timeout):
the outage is logged once when it starts and once when it ends, never per tick, the
ticks go on at most a heartbeat interval apart, and the first tick that reaches Redis
again refreshes every heartbeat at once, so the reaper sees the answers alive as soon as
it can see anything. Setting or dropping one task's heartbeat while Redis is away is
skipped: the loop sets it when Redis is back, and a heartbeat left behind expires.

Its round trips cost little: the ticks go on a connection of the watch's own
(`DirectPipeline`, a hundred EXISTS packed at once, not redis-py's pipeline), and a
generation's first heartbeat and its drop at the end, a SET and a DEL on every answer,
ride the process's token appends (`EventWriter.command`) when the watch has the writer:
under load they cost a few commands in a round trip that goes anyway, not a round trip
each; a lone answer's still go at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from redis.asyncio import Redis

from backend.constants import task_cancel_key, task_heartbeat_key
from backend.outage import Outage
from backend.settings import Settings
from backend.streams.direct_pipeline import DirectPipeline
from backend.streams.event_writer import RETRYABLE, EventWriter

log = logging.getLogger("sluice.worker.watch")


class Watch:
    def __init__(self, redis: Redis, settings: Settings, writer: EventWriter | None = None) -> None:
        self.redis = redis
        self.writer = writer
        self.direct = DirectPipeline(redis)
        self.prefix = settings.redis_prefix
        self.poll = settings.task_cancel_poll_seconds
        self.heartbeat_every = settings.task_heartbeat_interval_seconds
        self.heartbeat_ttl = settings.task_heartbeat_ttl_seconds
        self.running: dict[str, Callable[[], None] | None] = {}
        self.loop_task: asyncio.Task[None] | None = None
        self.outage = Outage(
            "Redis (task heartbeats and cancels)", log, max_delay=self.heartbeat_every
        )

    @property
    def generations(self) -> int:
        """How many generations this process runs now (the relay's load signal)."""
        return len(self.running)

    @asynccontextmanager
    async def track(self, task_id: str, on_cancel: Callable[[], None]) -> AsyncIterator[None]:
        """Heartbeat the task while the block runs; call `on_cancel` once if it is cancelled."""
        heartbeat = task_heartbeat_key(self.prefix, task_id)
        with suppress(*RETRYABLE):
            await self.send("SET", heartbeat, "1", "EX", self.heartbeat_ttl)
        self.running[task_id] = on_cancel
        if self.loop_task is None or self.loop_task.done():
            self.loop_task = asyncio.create_task(self.run())
        try:
            yield
        finally:
            self.running.pop(task_id, None)
            with suppress(*RETRYABLE):
                await self.send("DEL", heartbeat)

    async def send(self, *command: str | int) -> object:
        """One command, along with the writer's next batch when there is a writer."""
        if self.writer is not None:
            return await self.writer.command(*command)
        return await self.redis.execute_command(*command)

    async def run(self) -> None:
        # Beats are due by the clock, not by a count of ticks: a round trip that hung
        # (Redis paused for less than the socket timeout: nothing failed) leaves the
        # heartbeats expired, and the next tick must refresh them, not the tenth after.
        beaten_at = time.monotonic()
        while self.running:
            await asyncio.sleep(self.poll)
            sent_at = time.monotonic()
            due = self.outage.ongoing or sent_at - beaten_at >= self.heartbeat_every
            try:
                await self.check(heartbeat=due)
            except RETRYABLE as error:
                await self.outage.failed(error)  # backs off up to a heartbeat interval
                continue
            except Exception:
                log.exception("watching running tasks failed; retrying")
                continue
            self.outage.recovered()
            if due:
                beaten_at = sent_at

    async def check(self, *, heartbeat: bool) -> None:
        ids = list(self.running)
        if not ids:
            return
        commands: list[tuple[str | int, ...]] = [
            ("EXISTS", task_cancel_key(self.prefix, task_id)) for task_id in ids
        ]
        if heartbeat:
            commands += [
                ("SET", task_heartbeat_key(self.prefix, task_id), "1", "EX", self.heartbeat_ttl)
                for task_id in ids
            ]
        replies = await self.direct.execute(commands)
        for reply in replies:
            if isinstance(reply, Exception):  # READONLY (a failover) is an outage
                raise reply
        for task_id, cancelled in zip(ids, replies[: len(ids)], strict=True):
            if cancelled and (callback := self.running.get(task_id)):
                self.running[task_id] = None
                callback()

    async def close(self) -> None:
        if self.loop_task is not None:
            self.loop_task.cancel()
            with suppress(asyncio.CancelledError):
                await self.loop_task
        await self.direct.aclose()
