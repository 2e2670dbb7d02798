"""The stream hub's XREAD kept packed and read unparsed (streams.raw_xread): the same
bytes as redis-py's packing, the same entries as redis-py's parse followed by the old
`StreamEntry.from_redis`, and nothing changed for any other command or client."""

from __future__ import annotations

import uuid

import hiredis
import pytest
import redis.asyncio as aioredis

from backend.constants import stream_hub_wake_key
from backend.streams.feed_delivery import FeedEntry
from backend.streams.hub import StreamHub, StreamReader
from backend.streams.raw_xread import PackedPositions, flat_parser, reply_streams
from backend.streams.task_stream import START, StreamEntry, TaskStream, text
from schemas.events import DoneEvent, ErrorEvent, EventType, QueuedEvent

PREFIX = "raw-xread-test"
DATA = '{"delta":"live"}'


def redis_py_xread_args(block_ms: int, streams: dict[str, str]) -> tuple:
    """What `Redis.xread(streams, block=block_ms)` sends."""
    return ("XREAD", b"BLOCK", str(block_ms), b"STREAMS", *streams, *streams.values())


def test_packed_positions_pack_what_redis_py_packs_after_any_changes() -> None:
    positions = PackedPositions()
    for n in range(5):
        positions[f"{PREFIX}:task:{n}:events"] = f"{n}-0"
    positions[f"{PREFIX}:task:1:events"] = "1765000000000-12"  # moved: keeps its place
    positions.pop(f"{PREFIX}:task:3:events")
    positions.pop("never followed", None)
    positions["ünïcode:key"] = START
    wake = stream_hub_wake_key(PREFIX, "w")
    expected = hiredis.pack_command(redis_py_xread_args(250, {wake: "7-1", **positions}))
    assert positions.xread(250, wake, "7-1") == expected
    with pytest.raises(TypeError):
        positions.update({"a": "1-0"})
    with pytest.raises(TypeError):
        del positions[f"{PREFIX}:task:0:events"]


async def write_all_kinds(redis: aioredis.Redis) -> dict[str, str]:
    """Streams with every kind of entry; {key: the parser's name}."""
    first = TaskStream(redis, PREFIX, uuid.uuid4().hex)
    await first.append(QueuedEvent(position=2))
    await first.append_token("plain")
    await first.append_token('ünïcode ✓ 𝄞 "quoted" \\ \n\t\x00 end')
    await first.append(DoneEvent(message_id="m1", prompt_tokens=3, completion_tokens=4, cost=5))
    second = TaskStream(redis, PREFIX, uuid.uuid4().hex)
    await second.append_token("")
    await second.append(ErrorEvent(code="worker_lost", message="gone", message_id="m2"))
    # Written by hand: data before type, and an extra field (the long way of both parsers).
    await redis.xadd(second.key, {"data": '{"delta": "x"}', "type": "token", "extra": "ünï"})
    feed = f"{PREFIX}:feed:{uuid.uuid4().hex}"
    await redis.xadd(feed, {"type": "document", "data": '{"id": "d1", "status": "ready"}'})
    await redis.xadd(feed, {"data": "{}", "type": "reset"})
    return {first.key: "task", second.key: "task", feed: "feed"}


@pytest.mark.parametrize("decode_responses", [False, True])
async def test_an_unparsed_round_gives_the_entries_the_old_parse_gave(
    redis_url: str, decode_responses: bool
) -> None:
    client = aioredis.from_url(redis_url, decode_responses=decode_responses)
    reader = StreamReader(client, PREFIX, block_ms=1000)
    try:
        streams = await write_all_kinds(client)
        await client.xadd(reader.wake_key, {"w": "1"})
        old_parsers = {"task": StreamEntry.from_redis, "feed": FeedEntry.from_redis}
        assert flat_parser(StreamEntry.from_redis) == StreamEntry.from_fields
        for key, kind in streams.items():  # as subscriptions set them up
            reader.positions[key] = START
            reader.parsers[key] = flat_parser(old_parsers[kind])
        old_reply = await client.xread({reader.wake_key: START, **reader.positions}, block=1000)
        old = {
            text(key): [old_parsers[streams.get(text(key), "task")](i, f) for i, f in rows]
            for key, rows in old_reply
            if text(key) != reader.wake_key
        }
        new_reply = await reader.read()
        new = {
            text(key): [reader.parsers[text(key)](i, f) for i, f in rows]
            for key, rows in reply_streams(new_reply)
            if text(key) != reader.wake_key
        }
        assert new == old
        assert set(new) == set(streams) and sum(map(len, new.values())) == 9
        terminal = [entry.type for entry in new[next(iter(streams))] if entry.terminal]
        assert terminal == ["done"]

        # The reader's own dispatch moves every position and the wake cursor.
        for key, rows in reply_streams(new_reply):
            reader.dispatch(text(key), rows)
        assert {k: reader.positions[k] for k in streams} == {k: v[-1].id for k, v in new.items()}
        assert reader.wake_cursor == text((await client.xrange(reader.wake_key))[-1][0])
        expected = hiredis.pack_command(
            redis_py_xread_args(1000, {reader.wake_key: reader.wake_cursor, **reader.positions})
        )
        assert reader.positions.xread(1000, reader.wake_key, reader.wake_cursor) == expected
    finally:
        await client.delete(reader.wake_key)
        await client.aclose()


async def test_an_unparsed_read_leaves_every_client_parsing_as_before(
    redis_url: str, redis: aioredis.Redis
) -> None:
    """The hub reads on the app's shared client's pool; that client (and any other)
    still gets redis-py's parsed XREAD and XRANGE replies while the hub delivers."""
    hub = StreamHub(redis, PREFIX, block_ms=1000)
    stream = TaskStream(redis, PREFIX, uuid.uuid4().hex)
    other = aioredis.from_url(redis_url)
    try:
        subscription = await hub.subscribe(stream.key, START)
        entry_id = await stream.append_token("live")
        assert await subscription.get(5) == StreamEntry(entry_id, EventType.TOKEN, DATA)
        row = (entry_id.encode(), {b"type": b"token", b"data": DATA.encode()})
        for client in (redis, other):
            assert await client.xread({stream.key: START}) == [[stream.key.encode(), [row]]]
            assert await client.xread({stream.key: START}, block=10) == [
                [stream.key.encode(), [row]]
            ]
            assert await client.xrange(stream.key) == [row]
            assert await client.xrevrange(stream.key) == [row]
        assert await stream.read_after(START) == [StreamEntry(entry_id, EventType.TOKEN, DATA)]
        assert await stream.read_after(START, block_ms=10) == await stream.read_after(START)
    finally:
        await hub.stop()
        await other.aclose()
