"""The stream hub's XREAD, kept packed and read without redis-py's command layers.

A hub reader re-issues one XREAD over up to 256 stream keys after every reply (at 500
open streams, about three per answer), and between two rounds only the ids of the
streams that had entries change. redis-py rebuilt the ~500 arguments each round
(`xread`), packed them all again (~0.2 µs an argument) and turned every entry of the
reply into a dict (`parse_xread`, ~6% of the web process's CPU), which the hub then
turned into a `StreamEntry`. Here each key and each id is packed once, when it is
followed or moves (`PackedPositions`), a round joins the pieces and sends them on a
pooled connection, and the reply is read as Redis sent it: each entry goes from its
flat field list straight to the entry its readers want (bench/bench_hub_paths.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio import ConnectionPool, Redis

from backend.streams.task_stream import StreamEntry, fields_dict

# Turns a Redis Stream row into the entry its readers expect: a task stream's
# `StreamEntry` by default; the document status feed has its own (`FeedEntry`).
EntryParser = Callable[[Any, dict[Any, Any]], Any]
# The same from the row's field list as Redis sends it: [field, value, field, value, ...].
FlatParser = Callable[[Any, list[Any]], Any]
# redis-py before 5.3 wants the command's name to lend a connection; 5.3 deprecates it.
POOL_ARGS = (
    ("XREAD",)
    if inspect.signature(ConnectionPool.get_connection).parameters["command_name"].default
    is inspect.Parameter.empty
    else ()
)


def bulk(value: str) -> bytes:
    """`value` as one RESP bulk string, as redis-py would pack it."""
    data = value.encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


class PackedPositions(dict[str, str]):
    """A reader's followed keys and the id each is read after, with both kept packed in
    the same order, so an XREAD over them is a join rather than ~500 arguments packed.

    Written only by item assignment and `pop` (the reader's subscribe, dispatch and
    unsubscribe); `update` and `del` would leave the packed pieces behind, so they fail.
    """

    def __init__(self) -> None:
        super().__init__()
        self.packed_keys: dict[str, bytes] = {}
        self.packed_ids: dict[str, bytes] = {}

    def __setitem__(self, key: str, entry_id: str) -> None:
        super().__setitem__(key, entry_id)
        if key not in self.packed_keys:
            self.packed_keys[key] = bulk(key)
        self.packed_ids[key] = bulk(entry_id)

    def pop(self, key: str, *default: Any) -> Any:  # type: ignore[override]
        self.packed_keys.pop(key, None)
        self.packed_ids.pop(key, None)
        return super().pop(key, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise TypeError("PackedPositions is written one key at a time")

    def __delitem__(self, key: str) -> None:
        raise TypeError("PackedPositions drops a key with pop")

    def xread(self, block_ms: int, first_key: str, first_id: str) -> bytes:
        """XREAD BLOCK `block_ms` STREAMS over `first_key` (read after `first_id`) and
        every key here, packed."""
        streams = len(self.packed_keys) + 1
        return b"".join(
            (
                b"*%d\r\n$5\r\nXREAD\r\n$5\r\nBLOCK\r\n" % (4 + 2 * streams),
                bulk(str(block_ms)),
                b"$7\r\nSTREAMS\r\n",
                bulk(first_key),
                *self.packed_keys.values(),
                bulk(first_id),
                *self.packed_ids.values(),
            )
        )


async def read_unparsed(redis: Redis, command: bytes) -> Any:
    """Sends the packed `command` on a connection of `redis`'s pool and returns its
    reply as Redis sent it (no response callback: every client, `redis` included, still
    parses its own XREADs as before). A connection an error or a cancel cut short
    may hold half a reply, so it is dropped, as redis-py does."""
    pool = redis.connection_pool
    connection = await pool.get_connection(*POOL_ARGS)
    try:
        await connection.send_packed_command(command)
        return await connection.read_response()
    except BaseException:
        await connection.disconnect(nowait=True)
        raise
    finally:
        await pool.release(connection)


def reply_streams(reply: Any) -> Iterable[tuple[Any, list[Any]]]:
    """(key, rows) of an unparsed XREAD reply: a list of [key, rows] pairs in RESP2, a
    map in RESP3, nothing when the block timed out."""
    if not reply:
        return ()
    return reply.items() if isinstance(reply, dict) else reply


def flat_parser(parse: EntryParser) -> FlatParser:
    """`parse` on flat field lists: a task stream's entries are parsed from them
    directly; any other parser gets the dict redis-py would have built."""
    if parse == StreamEntry.from_redis:
        return StreamEntry.from_fields

    def parse_pairs(entry_id: Any, fields: list[Any]) -> Any:
        return parse(entry_id, fields_dict(fields))

    return parse_pairs
