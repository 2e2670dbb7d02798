"""One task's Redis Stream: what workers append to and readers deliver from.

Entry ids are the SSE `id:`s. Each entry holds the event's `type` and its JSON `data`
(the event without `type`), so delivery can frame it without re-encoding. Reading is
always strictly after a known id, never from `$`, which would lose events appended
between two reads.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from backend.constants import task_consumed_key, task_events_key, task_lease_key
from backend.settings import Settings
from backend.streams.event_writer import EventWriter, shared_writer
from schemas.events import EventType, TaskEvent, task_event_adapter

START = "0-0"
EXPIRY_REFRESH_SECONDS = 1.0
ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")

# Delete the lease only if it still holds our token: an expired lease now held by
# another reader must not be released by us.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# The terminal event was delivered: mark the stream consumed and give up our lease in one
# round trip (they were two, on every answer).
CONSUME_AND_RELEASE = """
redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('DEL', KEYS[2]) end
return 0
"""
REFRESH_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


EVENT_TYPES = {kind.value.encode(): kind for kind in EventType}
TERMINAL_TYPES = frozenset(kind for kind in EventType if kind.terminal)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def entry_id_key(entry_id: str) -> tuple[int, int]:
    """Sortable form of a stream entry id (`ms-seq`)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def is_entry_id(value: str) -> bool:
    return bool(ENTRY_ID.match(value))


def new_lease_token() -> str:
    """A reader's lease token: random, so only its holder can refresh or release it."""
    return secrets.token_hex(16)


def fields_dict(fields: list[Any]) -> dict[Any, Any]:
    """An entry's field list as Redis sends it ([field, value, ...]) as the dict redis-py
    makes of it."""
    pairs = iter(fields)
    return dict(zip(pairs, pairs, strict=False))


@dataclass(frozen=True, slots=True)
class StreamEntry:
    id: str
    type: EventType
    data: str

    @classmethod
    def from_redis(cls, entry_id: bytes | str, fields: dict[Any, Any]) -> StreamEntry:
        """An entry as Redis returns it. The hub parses every entry it reads, so the
        usual shape (bytes, known type) is three lookups; anything else goes the long way."""
        type_ = EVENT_TYPES.get(fields.get(b"type"))  # type: ignore[arg-type]
        data = fields.get(b"data")
        if type_ is not None and data is not None and isinstance(entry_id, bytes):
            return cls(entry_id.decode(), type_, data.decode())
        values = {text(k): text(v) for k, v in fields.items()}
        return cls(id=text(entry_id), type=EventType(values["type"]), data=values["data"])

    @classmethod
    def from_fields(cls, entry_id: bytes | str, fields: list[Any]) -> StreamEntry:
        """`from_redis` on the entry's field list as Redis sends it (the hub's XREAD,
        streams.raw_xread): the shape writers write, [type, t, data, d] in bytes, is
        read in place; anything else goes through the dict redis-py would have built."""
        if len(fields) == 4 and fields[0] == b"type" and fields[2] == b"data":
            type_ = EVENT_TYPES.get(fields[1])
            if type_ is not None and isinstance(entry_id, bytes):
                return cls(entry_id.decode(), type_, fields[3].decode())
        return cls.from_redis(entry_id, fields_dict(fields))

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def payload(self) -> dict[str, Any]:
        return json.loads(self.data)

    def event(self) -> TaskEvent:
        return task_event_adapter.validate_python({"type": self.type, **self.payload()})


class TaskStream:
    """Append, read, lease and consume one task's event stream."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        task_id: str,
        *,
        retention_seconds: int = 3600,
        max_events: int = 100_000,
        writer: EventWriter | None = None,
    ) -> None:
        self.redis = redis
        self.writer = writer or shared_writer(redis) or EventWriter(redis)
        self.task_id = task_id
        self.key = task_events_key(prefix, task_id)
        self.lease_key = task_lease_key(prefix, task_id)
        self.consumed_key = task_consumed_key(prefix, task_id)
        self.retention_seconds = retention_seconds
        self.max_events = max_events
        self.expiry_pushed_at = -EXPIRY_REFRESH_SECONDS
        # The id our last append returned: the fence after which a retried append looks
        # for itself (streams.landed), so one that landed before a lost reply is not
        # written twice.
        self.last_id: str | None = None

    @classmethod
    def for_task(
        cls, redis: Redis, settings: Settings, task_id: str, writer: EventWriter | None = None
    ) -> TaskStream:
        """`writer`: the process's shared one, to batch appends with other streams'."""
        return cls(
            redis,
            settings.redis_prefix,
            task_id,
            retention_seconds=settings.stream_retention_seconds,
            max_events=settings.stream_max_events,
            writer=writer,
        )

    async def append(self, event: TaskEvent) -> str:
        """Add an event; returns its entry id.

        The expiry is pushed out to the retention time on the first append, on terminal
        events and at most once a second in between, so an abandoned stream vanishes
        about one retention period after its last event while a token costs one XADD.
        """
        return await self.append_fields(
            event.type, event.model_dump_json(exclude={"type"}), terminal=event.type.terminal
        )

    async def append_token(self, delta: str) -> str:
        """`append(TokenEvent(delta=delta))`, the event of every burst of tokens, without
        building and dumping a model: orjson writes the same JSON."""
        data = orjson.dumps({"delta": delta}).decode()
        return await self.append_fields(EventType.TOKEN, data, terminal=False)

    async def append_fields(self, type_: EventType, data: str, *, terminal: bool) -> str:
        fields = {"type": type_.value, "data": data}
        now = time.monotonic()
        refresh = terminal or now - self.expiry_pushed_at >= EXPIRY_REFRESH_SECONDS
        entry_id = await self.writer.append(
            self.key,
            fields,
            max_events=self.max_events,
            expire_seconds=self.retention_seconds if refresh else None,
            after=self.last_id,
        )
        if refresh:
            self.expiry_pushed_at = now
        self.last_id = text(entry_id)
        return self.last_id

    async def read_after(
        self, last_id: str = START, block_ms: int | None = None, count: int | None = None
    ) -> list[StreamEntry]:
        """Entries strictly after `last_id`; with `block_ms`, wait that long for one."""
        if block_ms is None:
            rows = await self.redis.xrange(self.key, min=f"({last_id}", count=count)
        else:
            reply = await self.redis.xread({self.key: last_id}, count=count, block=block_ms)
            rows = reply[0][1] if reply else []
        return [StreamEntry.from_redis(entry_id, fields) for entry_id, fields in rows]

    async def last_entry(self) -> StreamEntry | None:
        rows = await self.redis.xrevrange(self.key, count=1)
        return StreamEntry.from_redis(*rows[0]) if rows else None

    async def queue_position(self) -> int | None:
        """The answer's place in line for the model while it waits behind others, else
        None: only a `queued` event can be last while it waits (it is followed by one
        with position 0 when generation starts)."""
        last = await self.last_entry()
        if last is None or last.type is not EventType.QUEUED:
            return None
        return last.payload()["position"] or None

    async def has_entry(self, entry_id: str) -> bool:
        return bool(await self.redis.xrange(self.key, min=entry_id, max=entry_id, count=1))

    async def exists(self) -> bool:
        return bool(await self.redis.exists(self.key))

    async def acquire_lease(self, ttl_seconds: float) -> str | None:
        """Become the one reader of this stream; returns the lease token, or None if taken."""
        token = new_lease_token()
        acquired = await self.redis.set(self.lease_key, token, nx=True, px=int(ttl_seconds * 1000))
        return token if acquired else None

    async def seize_lease(self, ttl_seconds: float) -> tuple[str, bool]:
        """Take the lease whoever holds it; returns the new token and whether it was held."""
        token = new_lease_token()
        previous = await self.redis.set(self.lease_key, token, px=int(ttl_seconds * 1000), get=True)
        return token, previous is not None

    async def refresh_lease(self, token: str, ttl_seconds: float) -> bool:
        """Extend our lease; False means it expired and may belong to another reader now."""
        return bool(
            await self.redis.eval(REFRESH_LEASE, 1, self.lease_key, token, int(ttl_seconds * 1000))
        )

    def queue_refresh_lease(self, pipe: Pipeline, token: str, ttl_seconds: float) -> None:
        """`refresh_lease` queued on `pipe`, to share a round trip; its reply is 1 or 0."""
        pipe.eval(REFRESH_LEASE, 1, self.lease_key, token, int(ttl_seconds * 1000))

    async def release_lease(self, token: str) -> bool:
        return bool(await self.redis.eval(RELEASE_LEASE, 1, self.lease_key, token))

    async def mark_consumed(self) -> None:
        """Record that the terminal event was delivered: later reads are refused (410)."""
        await self.redis.set(self.consumed_key, "1", ex=self.retention_seconds)

    async def consume_and_release(self, token: str) -> bool:
        """`mark_consumed` and `release_lease` in one round trip; True if the lease was
        still ours."""
        keys = (self.consumed_key, self.lease_key)
        return bool(
            await self.redis.eval(CONSUME_AND_RELEASE, 2, *keys, token, self.retention_seconds)
        )

    async def is_consumed(self) -> bool:
        return bool(await self.redis.exists(self.consumed_key))
