"""The delivery rules shared by every channel (SSE, WebSocket): consumed once, resumable.

`open_task_reader` decides, before anything is sent, whether this caller may read the
task's stream now (404 / 409 / 410 otherwise) and takes the stream's lease.
`TaskReader.events` then yields entries until the terminal one. It only reads: the
generation runs on a worker, so a client disconnect (which cancels the generator)
stops nothing but this delivery, and the lease is released in `finally` so the client
can resume with its last event id. A client whose old connection went half-open (no
disconnect is ever seen) resumes with an entry id of the stream and takes the lease
over at once; the old delivery ends (`backend/streams/takeover.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.errors import BadRequest, Conflict, Gone, NotFound
from backend.models import Task, User
from backend.models.lean_reads import owned_task
from backend.settings import Settings
from backend.streams.hub import StreamHub
from backend.streams.readable import (
    busy_message,
    consumed_message,
    ensure_readable,
    refuses_consumed,
)
from backend.streams.subscription import Subscription
from backend.streams.takeover import take_lease
from backend.streams.task_stream import START, StreamEntry, TaskStream, is_entry_id

log = logging.getLogger("sluice.streams")


class TaskReader:
    """Holds a task stream's lease and yields its entries after `last_id`."""

    def __init__(
        self, stream: TaskStream, hub: StreamHub, lease: str, last_id: str, settings: Settings
    ) -> None:
        self.stream = stream
        self.hub = hub
        self.lease = lease
        self.last_id = last_id
        self.settings = settings
        self.lease_seconds = settings.stream_lease_seconds
        self.heartbeat_seconds = settings.sse_heartbeat_seconds
        # Set when a resuming reader took the lease; `events` then ends without consuming.
        self.superseded = False
        self.owner: asyncio.Task | None = None
        self.subscription: Subscription | None = None
        # True while the caller holds an entry: it is writing it to the client.
        self.delivering = False
        self.closed = False

    @property
    def task_id(self) -> str:
        return self.stream.task_id

    async def events(self) -> AsyncIterator[StreamEntry | None]:
        """Entries in order up to the terminal one; None marks an idle heartbeat interval.

        The stream is marked consumed only after the terminal entry was taken by the
        caller. Ends early, without consuming, if the lease was lost or taken over. On
        each idle heartbeat it checks the task's worker is alive and fails the task
        otherwise, which appends the terminal `error` this loop then delivers.
        """
        self.owner = asyncio.current_task()
        subscription = None
        try:
            await self.hub.takeovers.watch(self)
            # A takeover announced before `watch` went unheard: the lease tells. Its
            # refresh goes in the subscription's round trip (they were two).
            subscription, (still_ours,) = await self.hub.subscribe_led(
                self.stream.key, self.last_id, self.queue_lease_refresh
            )
            self.subscription = subscription
            if not still_ours:
                return
            now = time.monotonic()
            next_heartbeat = now + self.heartbeat_seconds
            next_refresh = now + self.lease_seconds / 3
            while not self.superseded:
                wait = max(0.0, min(next_heartbeat, next_refresh) - time.monotonic())
                entry = await subscription.get(wait)
                if self.superseded:
                    return
                now = time.monotonic()
                if now >= next_refresh:
                    if not await self.stream.refresh_lease(self.lease, self.lease_seconds):
                        return
                    next_refresh = now + self.lease_seconds / 3
                if entry is None:
                    if now >= next_heartbeat:
                        next_heartbeat = now + self.heartbeat_seconds
                        self.delivering = True
                        yield None
                        self.delivering = False
                        await self.check_worker()
                    continue
                self.last_id = entry.id
                next_heartbeat = now + self.heartbeat_seconds
                self.delivering = True
                yield entry
                self.delivering = False
                if entry.terminal:
                    await self.consume()
                    return
        finally:
            self.hub.takeovers.unwatch(self)
            if subscription is not None:
                self.hub.unsubscribe(subscription)
            await self.close()

    async def consume(self) -> None:
        """Mark the stream consumed and give up the lease, in one round trip (the
        terminal entry was taken). Shielded: a client that closes on the terminal event
        (most do) cancels this request while the script's reply is on its way; the
        script then still runs to its end and releases the lease, so `close` sends no
        second release (it did, on most answers, and the cancelled read dropped its
        Redis connection). A failure leaves `close` to release the lease."""
        consuming = asyncio.ensure_future(self.stream.consume_and_release(self.lease))
        try:
            await asyncio.shield(consuming)
        except asyncio.CancelledError:
            self.closed = True
            consuming.add_done_callback(self.consumed_late)
            raise
        self.closed = True

    def consumed_late(self, consuming: asyncio.Future[bool]) -> None:
        """A consume whose request was cancelled: a failure is only logged (the lease
        expires by itself, and a resume takes it over at once)."""
        if not consuming.cancelled() and consuming.exception() is not None:
            log.warning(
                "consuming the stream of task %s failed: %s", self.task_id, consuming.exception()
            )

    def queue_lease_refresh(self, pipe: Pipeline) -> None:
        self.stream.queue_refresh_lease(pipe, self.lease, self.lease_seconds)

    def supersede(self) -> None:
        """Another reader resumed this stream and holds the lease now: stop delivering.

        A waiting delivery is woken and ends. One that is writing an entry is cancelled:
        it is most likely stuck on the half-open connection the client left behind.
        """
        if self.superseded:
            return
        self.superseded = True
        if self.delivering and self.owner is not None:
            self.owner.cancel()
        elif self.subscription is not None:
            self.subscription.wake()

    async def check_worker(self) -> None:
        """The workers' reaper normally ends a task whose worker died; if no chat worker
        is left to run it, the silent reader does (through the hub's `worker_check`). A
        failed check only waits for the next heartbeat: it must not end a delivery that
        is otherwise fine."""
        if self.hub.worker_check is None:
            return
        try:
            await self.hub.worker_check(self.task_id)
        except Exception:
            log.warning("checking the worker of task %s failed", self.task_id, exc_info=True)

    async def close(self) -> None:
        """Give up the lease (once); shielded so a cancelled delivery still lets the client
        resume."""
        if self.closed:
            return
        self.closed = True
        try:
            await asyncio.shield(self.stream.release_lease(self.lease))
        except (RedisConnectionError, RedisTimeoutError) as error:
            # Redis away: the lease expires by itself, and a resume takes it over at once.
            log.warning("releasing the lease of task %s failed: %s", self.task_id, error)


async def open_task_reader(
    user: User,
    task_id: str,
    last_event_id: str | None,
    *,
    redis: Redis,
    hub: StreamHub,
    settings: Settings,
) -> TaskReader:
    """Check the delivery rules and take the lease; raises 400/404/409/410 otherwise."""
    if last_event_id is not None and not is_entry_id(last_event_id):
        raise BadRequest(
            "Invalid last event id: send the `id` of the last event you received, "
            "e.g. 1700000000000-0"
        )
    task = await owned_task(task_id, user.id)
    if task is None:
        raise NotFound(f"Task '{task_id}' not found")
    stream = TaskStream.for_task(redis, settings, task_id)
    await ensure_readable(stream, task, last_event_id, settings)
    lease = await take_lease(stream, last_event_id, hub.takeovers, settings)
    if lease is None:
        raise Conflict(busy_message(last_event_id))
    if await refuses_consumed(stream, last_event_id):
        await stream.release_lease(lease)
        raise Gone(consumed_message(task_id))
    return TaskReader(stream, hub, lease, last_event_id or START, settings)


async def open_new_task_reader(
    task: Task, *, redis: Redis, hub: StreamHub, settings: Settings, lease: str | None = None
) -> TaskReader:
    """The first reader of a task the caller has just created: it has no stream yet and
    no other reader, so there is nothing to check but the lease. `lease`: the token of
    one already taken with the task's job (`services.tasks.ReaderLease`)."""
    stream = TaskStream.for_task(redis, settings, task.id)
    if lease is None:
        lease = await stream.acquire_lease(settings.stream_lease_seconds)
    if lease is None:
        raise Conflict(busy_message())
    return TaskReader(stream, hub, lease, START, settings)
