"""Appending to many task streams through one pipelined round trip at a time.

A chat worker appends an event per token to hundreds of streams at once. Sent one XADD
at a time, each append cost a round trip (a send, a reply to read, a wake-up): about
85 µs of worker CPU per token on the 2-core bench VM, more than reading the token from
the provider. Here appends made while a round trip is in flight wait for the next one
and go together, so under load a pipeline carries dozens of them, while the lone append
of an idle process still goes at once. Order per stream is kept: batches go one at a
time and Redis runs a pipeline's commands in order.

A writer given a tolerance (the chat worker's, `REDIS_OUTAGE_TOLERANCE_SECONDS`) rides out
a Redis outage: a batch that meets a lost connection, a timeout, a loading or read-only
Redis is retried with capped back-off (logged once per outage) until Redis answers or the
outage has lasted the tolerance, when every waiting append fails with
`StreamUnavailable`. A batch that failed in flight may have been partly applied; before
each retry the appends that landed are found (`streams.landed`) and only the rest are
sent again, so no event is written twice and each stream keeps its order. The appends
made meanwhile wait for the next batch. Without a tolerance (the web process, whose
requests answer 503 at once) the first error fails the batch, as before.

The worker's writer (the one with a tolerance) sends its batches on a connection it
holds, packed at once (`streams.direct_pipeline`): redis-py's per-pipeline machinery
(pool checkout, command objects, a timeout per reply) cost more than the appends.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.outage import Outage
from backend.streams.direct_pipeline import DirectPipeline
from backend.streams.landed import find_landed
from backend.streams.write_batch import Append, Side, settle, text, xadd_command

log = logging.getLogger("sluice.streams.writer")

# The connection failed, not the command: Redis restarting, failing over (a replica that
# is read-only until promoted), loading its data (BusyLoadingError is a ConnectionError),
# paused past the socket timeout, or a socket error redis-py did not wrap.
RETRYABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)
# The back-off's cap while an answer waits: tokens flow again within a second of Redis.
RETRY_MAX_DELAY_SECONDS = 1.0


class StreamUnavailable(RedisConnectionError):
    """Redis stayed unreachable for longer than the writer's tolerance."""


# The writer a worker process shares among its generations, by Redis client: a
# `TaskStream` made without a writer (an ending's, the reaper's) uses it, so its commands
# ride the same round trips.
_SHARED: weakref.WeakKeyDictionary[Redis, EventWriter] = weakref.WeakKeyDictionary()


def share(writer: EventWriter) -> None:
    """Make `writer` the one task streams on its Redis client use when given none."""
    _SHARED[writer.redis] = writer


def shared_writer(redis: Redis) -> EventWriter | None:
    return _SHARED.get(redis)


class EventWriter:
    """XADDs for one Redis client, batched; share one per process."""

    def __init__(
        self,
        redis: Redis,
        *,
        outage_tolerance_seconds: float = 0.0,
        own_connection: bool | None = None,
    ) -> None:
        """`own_connection`: send the batches on a connection the writer holds
        (`DirectPipeline`), not through redis-py's pipelines; by default a writer that
        rides out outages does, being the one long-lived writer of a worker process (a
        `TaskStream`'s own writer, made per request in the web process, borrows from the
        pool per batch, so it holds no connection). `aclose` gives it back."""
        self.redis = redis
        self.tolerance = outage_tolerance_seconds
        if own_connection is None:
            own_connection = outage_tolerance_seconds > 0
        self.direct = DirectPipeline(redis) if own_connection else None
        self.pending: list[Append] = []
        self.sides: list[Side] = []
        self.flushing: asyncio.Task[None] | None = None
        self.round_trips = 0
        self.outage = Outage(
            "Redis (appending task events)", log, max_delay=RETRY_MAX_DELAY_SECONDS
        )

    async def append(
        self,
        key: str,
        fields: dict[str, str],
        *,
        max_events: int,
        expire_seconds: int | None = None,
        after: str | None = None,
    ) -> bytes | str:
        """Add an entry to the stream at `key` (trimmed to about `max_events`, its
        expiry set when `expire_seconds` is given); returns the entry id. `after`: the
        id of the stream's last entry this caller saw written, so a retry after a failed
        round trip can tell whether this append landed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes | str] = loop.create_future()
        self.pending.append(Append(key, fields, max_events, expire_seconds, done, after))
        if self.flushing is None:
            self.flushing = loop.create_task(self._flush())
        return await done

    async def command(self, *command: object) -> object:
        """Run `command` in the next batch (its reply, or its error raised), riding on
        the appends' round trip: for the worker's per-answer heartbeat SET and DEL, which
        cost a round trip each. Not retried: a failed round trip, or an outage under
        way, fails it at once with Redis' error, for the caller to skip or redo. A
        writer without a connection of its own sends it at once, alone."""
        if self.direct is None:
            return await self.redis.execute_command(*command)
        if self.outage.ongoing:
            raise RedisConnectionError("Redis is unreachable (appending task events)")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[object] = loop.create_future()
        self.sides.append(Side(command, done))
        if self.flushing is None:
            self.flushing = loop.create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        try:
            while self.pending or self.sides:
                batch, self.pending = self.pending, []
                sides, self.sides = self.sides, []
                try:
                    try:
                        replies = await self._write(batch, sides=sides)
                    except RETRYABLE as error:
                        if self.tolerance <= 0 or not batch:
                            raise
                        self._fail_sides(sides, error)
                        replies = await self._retry(batch, error)
                    else:
                        if self.outage.ongoing:
                            self.outage.recovered()
                except BaseException as exc:
                    self._fail_sides(sides, exc)
                    for append in batch:
                        settle(append.done, exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for append, reply in zip(batch, replies, strict=True):
                    settle(append.done, reply)
        finally:
            self.flushing = None

    def _fail_sides(self, sides: list[Side], error: BaseException) -> None:
        for side in (*sides, *self.sides):
            settle(side.done, error)
        self.sides = []

    async def _write(
        self,
        batch: list[Append],
        expire: list[Append] | None = None,
        sides: list[Side] | None = None,
    ) -> list[object]:
        """One pipeline; each append's XADD reply (or error), in batch order. `expire`:
        appends that landed in a failed round trip whose EXPIRE may not have; `sides`:
        commands sent after the appends (an append of the same stream waiting in this
        batch goes first), whose replies settle them here."""
        commands = [("EXPIRE", append.key, append.expire_seconds) for append in expire or ()]
        for append in batch:
            commands.append(xadd_command(append))
            if append.expire_seconds is not None:
                commands.append(("EXPIRE", append.key, append.expire_seconds))
        appended = len(commands)
        commands += [side.command for side in sides or ()]
        if self.direct is not None:
            replies = await self.direct.execute(commands)  # type: ignore[arg-type]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        self.round_trips += 1
        for side, reply in zip(sides or (), replies[appended:], strict=True):
            settle(side.done, reply)
        xadds, index = [], len(expire or ())
        for append in batch:
            reply = replies[index]
            if isinstance(reply, ReadOnlyError):  # a failover: the rest did not apply either
                raise reply
            xadds.append(reply)
            index += 1 if append.expire_seconds is None else 2
        return xadds

    async def _retry(self, batch: list[Append], error: BaseException) -> list[object]:
        """`batch` after it failed with `error`: the appends that landed are found, the
        rest re-sent, until Redis answers or the outage outlasts the tolerance."""
        replies: dict[int, object] = {}
        waiting = list(range(len(batch)))
        while True:
            since = self.outage.since
            if since is not None and time.monotonic() - since >= self.tolerance:
                raise StreamUnavailable(
                    f"Redis was unreachable for more than {self.tolerance:g} s while "
                    f"appending task events ({type(error).__name__}: {error})"
                ) from error
            await self.outage.failed(error)
            self._fail_sides([], error)
            try:
                found = await find_landed(self.redis, [batch[i] for i in waiting])
                fences: dict[str, str] = {}
                for k, entry_id in found.items():
                    replies[waiting[k]] = entry_id
                    fences[batch[waiting[k]].key] = text(entry_id)
                expire = [batch[waiting[k]] for k in found if batch[waiting[k]].expire_seconds]
                waiting = [i for k, i in enumerate(waiting) if k not in found]
                for i in waiting:  # a later retry looks for what landed after these
                    batch[i].after = fences.get(batch[i].key, batch[i].after)
                sent = await self._write([batch[i] for i in waiting], expire)
            except RETRYABLE as again:
                error = again
                continue
            self.outage.recovered()
            replies.update(zip(waiting, sent, strict=True))
            return [replies[i] for i in range(len(batch))]

    async def aclose(self) -> None:
        """Wait for the appends already made to be written; give back the connection
        (and stop being the shared writer)."""
        if _SHARED.get(self.redis) is self:
            del _SHARED[self.redis]
        if self.flushing is not None:
            await asyncio.shield(self.flushing)
        if self.direct is not None:
            await self.direct.aclose()
