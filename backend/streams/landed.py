"""Which appends of a pipeline that failed in flight did land, so a retry re-sends only
the rest and no event is written twice.

A pipeline whose connection broke (Redis restarted, failed over, timed out) may have been
partly applied: Redis runs a connection's commands in order, so of each stream's appends
in the batch a prefix landed, and with an append-only file that survived the restart it
is still there. Each append carries its stream's fence, the id of the last entry the
writer saw confirmed before it (`TaskStream` passes the id its previous append
returned); the entries after the fence, compared field by field with the batch's appends
of that stream in order, say how many landed.

Exact when a stream's appends are awaited one at a time (every writer here does so): the
fence is then the entry just before the batch. Without a fence (a stream's first append
through its `TaskStream`) or with a stale one (concurrent appends to one stream), the
longest run of newest entries equal to the start of the batch counts as landed: an
append identical to the entries just before it may be taken as landed when it did not.
A Redis that lost data (no persistence, or the last second of an `everysec` append-only
file) has lost the landed entries too: they are found missing and re-sent, in order,
after the entries it kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from redis.asyncio import Redis


class Append(Protocol):
    key: str
    fields: dict[str, str]
    after: str | None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def landed_count(entries: Sequence[tuple[Any, dict[Any, Any]]], appends: Sequence[Append]) -> int:
    """How many of `appends` (one stream's, in order) are the newest of `entries` (the
    stream's entries after the fence, oldest first)."""
    found = [{_text(k): _text(v) for k, v in fields.items()} for _, fields in entries]
    for count in range(min(len(found), len(appends)), 0, -1):
        newest = found[len(found) - count :]
        if all(f == a.fields for f, a in zip(newest, appends[:count], strict=True)):
            return count
    return 0


async def find_landed(redis: Redis, appends: Sequence[Append]) -> dict[int, bytes | str]:
    """For `appends` (a failed batch, in order), the entry id of each that landed (as
    the client returns ids), by its index in `appends`; one round trip. Raises what
    Redis raises while it is still away."""
    by_stream: dict[str, list[int]] = {}
    for index, append in enumerate(appends):
        by_stream.setdefault(append.key, []).append(index)
    async with redis.pipeline(transaction=False) as pipe:
        for key, indices in by_stream.items():
            fence = appends[indices[0]].after
            pipe.xrevrange(key, max="+", min=f"({fence}" if fence else "-", count=len(indices))
        # A key that is not a stream (WRONGTYPE) holds none of the batch: its append
        # fails again on its own when re-sent, as it did the first time.
        replies = await pipe.execute(raise_on_error=False)
    landed: dict[int, bytes | str] = {}
    for (_, indices), newest_first in zip(by_stream.items(), replies, strict=True):
        entries = list(reversed(newest_first)) if isinstance(newest_first, list) else []
        stream_appends = [appends[i] for i in indices]
        count = landed_count(entries, stream_appends)
        for position in range(count):
            landed[indices[position]] = entries[len(entries) - count + position][0]
    return landed
