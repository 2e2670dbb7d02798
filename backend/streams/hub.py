"""Per-process fan-out of task streams to their open readers.

Thousands of open streams must not each hold a blocking Redis connection, so a reader
task runs one XREAD BLOCK over many subscribed stream keys (a few hundred per reader)
and hands entries to per-subscriber queues. After each reply it lingers 3 ms (up to 10
after a reply of many streams: streams/linger.py) so that, under load, an XREAD carries
many entries rather than a few. Each XREAD also watches the reader's own wake-up
stream: subscribing to a new key XADDs to it so the blocked read returns at once and is
re-issued with the new key.

A subscriber registers first and then catches up with a non-blocking XRANGE from its
last id; entries the hub dispatches meanwhile are held back and merged after the
catch-up, deduplicated by id, so nothing is lost or repeated whatever the timing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.constants import stream_hub_wake_key
from backend.outage import Outage
from backend.streams.linger import linger_after
from backend.streams.raw_xread import (
    EntryParser,
    FlatParser,
    PackedPositions,
    flat_parser,
    read_unparsed,
    reply_streams,
)
from backend.streams.subscription import Subscription
from backend.streams.takeover import Takeovers
from backend.streams.task_stream import StreamEntry, text

log = logging.getLogger("sluice.streams")

WAKE_MAX_LEN = 16
WAKE_TTL_SECONDS = 24 * 3600
MAX_BACKOFF_SECONDS = 2.0
# After a reply, wait this long before the next XREAD so entries gather. Re-issuing
# costs ~1 µs of client CPU per followed key; with hundreds of busy streams this cut the
# web process's CPU by a sixth, for at most 3 ms more latency on a stream's later tokens.
LINGER_SECONDS = 0.003
# A Redis that is gone or does not answer (REDIS_SOCKET_TIMEOUT_SECONDS).
REDIS_OUTAGES = (RedisConnectionError, RedisTimeoutError, OSError)

# Given a task id, ends the task if its worker died (the layer above supplies it:
# `services.task_recovery.reap_if_dead`); readers call it on idle heartbeats.
WorkerCheck = Callable[[str], Awaitable[object]]
# Queues commands on a subscription's pipeline, ahead of its catch-up read.
Lead = Callable[[Pipeline], object]


class StreamReader:
    """One blocking XREAD over a bounded set of stream keys and this reader's wake stream."""

    def __init__(self, redis: Redis, prefix: str, *, block_ms: int) -> None:
        self.redis = redis
        self.wake_key = stream_hub_wake_key(prefix, uuid.uuid4().hex)
        self.block_ms = block_ms
        self.subscribers: dict[str, set[Subscription]] = {}
        # Kept packed for the XREAD (streams.raw_xread).
        self.positions = PackedPositions()
        self.parsers: dict[str, FlatParser] = {}
        # The wake stream is this reader's own, so reading it from the start is safe.
        self.wake_cursor = "0-0"
        # Set once a wake is sent, cleared when the XREAD is re-issued: a burst of new
        # subscriptions costs one wake and one re-issued read, not one each.
        self.wake_pending = False
        self.task: asyncio.Task[None] | None = None
        # A Redis outage is logged when it starts and when it ends, not per failed read.
        self.outage = Outage("Redis (stream hub)", log, max_delay=MAX_BACKOFF_SECONDS)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="stream-hub-reader")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        await self.redis.delete(self.wake_key)

    async def wake_and_read(
        self, key: str, last_id: str, lead: Lead | None = None, *, wake: bool = True
    ) -> tuple[list, list]:
        """`lead`'s commands, the wake of the blocked read (for a new key, unless one is
        on its way) and `key` read after `last_id`, in one round trip (a new stream's
        subscription paid two, a reader's lease refresh one more): (`lead`'s replies, rows)."""
        wake = wake and not self.wake_pending
        if lead is None and not wake:
            return [], await self.redis.xrange(key, min=f"({last_id}")
        async with self.redis.pipeline(transaction=False) as pipe:
            if lead is not None:
                lead(pipe)
            led = len(pipe.command_stack)
            if wake:
                self.wake_pending = True
                pipe.xadd(self.wake_key, {"w": "1"}, maxlen=WAKE_MAX_LEN, approximate=True)
                pipe.expire(self.wake_key, WAKE_TTL_SECONDS)
            pipe.xrange(key, min=f"({last_id}")
            replies = await pipe.execute()
        return replies[:led], replies[-1]

    async def subscribe(
        self, key: str, last_id: str, parse: EntryParser, lead: Lead | None
    ) -> tuple[Subscription, list]:
        """Follow `key` from just after `last_id` (catch-up first, then live entries);
        also returns the replies of `lead`'s commands, sent first in the same round trip."""
        subscription = Subscription(key, last_id)
        self.subscribers.setdefault(key, set()).add(subscription)
        if key not in self.parsers:
            self.parsers[key] = flat_parser(parse)
        try:
            new = key not in self.positions
            if new:
                self.positions[key] = last_id
            led, rows = await self.wake_and_read(key, last_id, lead, wake=new)
        except BaseException:
            self.unsubscribe(subscription)
            raise
        subscription.caught_up([parse(i, f) for i, f in rows])
        return subscription, led

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self.subscribers.get(subscription.key)
        if subscribers is None:
            return
        subscribers.discard(subscription)
        if not subscribers:
            del self.subscribers[subscription.key]
            self.positions.pop(subscription.key, None)
            self.parsers.pop(subscription.key, None)

    async def run(self) -> None:
        backoff = 0.05
        while True:
            self.wake_pending = False
            try:
                reply = await self.read()
            except asyncio.CancelledError:
                raise
            except REDIS_OUTAGES as error:
                await self.outage.failed(error)
                continue
            except Exception:
                log.exception("stream hub read failed; retrying in %.2fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            backoff = 0.05
            self.outage.recovered()
            delivered = False
            for raw_key, rows in reply_streams(reply):
                delivered = self.dispatch(text(raw_key), rows) or delivered
            # A reply of wakes alone (new subscriptions) is followed at once: the new
            # streams' first entries, what their readers wait for most, would wait out
            # the linger otherwise (up to 3 ms more on the first token).
            if delivered:  # longer after replies of many streams (streams/linger.py)
                await asyncio.sleep(linger_after(len(reply), LINGER_SECONDS))

    async def read(self) -> Any:
        """One XREAD BLOCK over the wake stream and every followed key, its reply as
        Redis sent it (None when the block ran out)."""
        command = self.positions.xread(self.block_ms, self.wake_key, self.wake_cursor)
        return await read_unparsed(self.redis, command)

    def dispatch(self, key: str, rows: list) -> bool:
        """Hand `rows` of `key` (unparsed: [id, [field, value, ...]]) to its subscribers;
        True if they were a stream's entries (not this reader's wakes)."""
        if key == self.wake_key:
            self.wake_cursor = text(rows[-1][0])
            return False
        if key not in self.positions:
            return False
        parse = self.parsers.get(key, StreamEntry.from_fields)
        entries = [parse(i, f) for i, f in rows]
        self.positions[key] = entries[-1].id
        for subscription in self.subscribers.get(key, ()):
            subscription.offer(entries)
        return True


class StreamHub:
    """This process's readers: one blocking XREAD per `keys_per_reader` followed streams.

    Re-issuing an XREAD costs time in proportion to its keys, and it is re-issued after
    every event on any of them; bounding the keys per read keeps that cost, and so the
    delivery latency, flat however many streams are open.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        block_ms: int = 30_000,
        keys_per_reader: int = 256,
        worker_check: WorkerCheck | None = None,
    ) -> None:
        self.redis = redis
        self.worker_check = worker_check
        self.prefix = prefix
        self.block_ms = block_ms
        self.keys_per_reader = keys_per_reader
        self.readers: list[StreamReader] = []
        self.owners: dict[str, StreamReader] = {}
        self.takeovers = Takeovers(redis, prefix)

    def reader_with_room(self) -> StreamReader:
        for reader in self.readers:
            if len(reader.positions) < self.keys_per_reader:
                return reader
        reader = StreamReader(self.redis, self.prefix, block_ms=self.block_ms)
        reader.start()
        self.readers.append(reader)
        return reader

    async def subscribe(
        self, key: str, last_id: str, parse: EntryParser = StreamEntry.from_redis
    ) -> Subscription:
        """Follow `key` from just after `last_id`: catch-up first, then live entries."""
        subscription, _ = await self.subscribe_led(key, last_id, None, parse)
        return subscription

    async def subscribe_led(
        self, key: str, last_id: str, lead: Lead | None, parse: EntryParser = StreamEntry.from_redis
    ) -> tuple[Subscription, list]:
        """`subscribe`, with `lead`'s commands sent first in the same round trip; returns
        their replies too (a task reader refreshes its lease this way)."""
        reader = self.owners.get(key) or self.reader_with_room()
        self.owners[key] = reader
        try:
            return await reader.subscribe(key, last_id, parse, lead)
        finally:
            if key not in reader.subscribers:
                self.owners.pop(key, None)

    def unsubscribe(self, subscription: Subscription) -> None:
        reader = self.owners.get(subscription.key)
        if reader is None:
            return
        reader.unsubscribe(subscription)
        if subscription.key not in reader.subscribers:
            del self.owners[subscription.key]

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for r in self.readers for s in r.subscribers.values())

    async def stop(self) -> None:
        await self.takeovers.stop()
        for reader in self.readers:
            await reader.stop()
        self.readers.clear()
        self.owners.clear()
