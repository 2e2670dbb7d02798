"""Commands riding the EventWriter's batches (`EventWriter.command`), against a real Redis:
the watch's heartbeat SET and DEL of each answer go with the token appends in flight
instead of a round trip each, a failed round trip or an outage under way fails them at
once (never retried, never holding up an answer's start or end), and the watch's ticks
still beat and see cancels on the watch's own connection."""

from __future__ import annotations

import asyncio
import time
import uuid

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from backend.constants import task_cancel_key, task_heartbeat_key
from backend.settings import Settings
from backend.streams.endings import append_ending
from backend.streams.event_writer import EventWriter, share, shared_writer
from backend.streams.task_stream import TaskStream
from schemas.events import ErrorEvent
from tests.support.live_server import free_port
from workers.jobs.watch import Watch

TOKEN = {"type": "token", "data": '{"delta": "x"}'}


async def test_a_command_rides_the_appends_round_trip(redis: aioredis.Redis) -> None:
    writer = EventWriter(redis, outage_tolerance_seconds=5)
    prefix = f"side:{uuid.uuid4().hex}"
    await writer.append(f"{prefix}:warm", TOKEN, max_events=10)
    before = writer.round_trips

    async def appends() -> None:
        for n in range(5):
            await writer.append(f"{prefix}:{n % 3}", TOKEN, max_events=10)

    replies = await asyncio.gather(
        *(appends() for _ in range(10)),
        writer.command("SET", f"{prefix}:hb", "1", "EX", 30),
        writer.command("EXISTS", f"{prefix}:nothing"),
    )

    assert replies[-2:] in ([b"OK", 0], [True, 0])
    assert await redis.ttl(f"{prefix}:hb") > 25
    # 50 appends and 2 commands; the commands added no round trip of their own.
    assert writer.round_trips - before <= 6
    lone = writer.round_trips
    assert await writer.command("DEL", f"{prefix}:hb") == 1  # a lone one goes at once
    assert writer.round_trips == lone + 1
    await writer.aclose()


async def test_a_command_fails_at_once_in_an_outage_while_appends_are_retried() -> None:
    client = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2)  # nothing listens
    writer = EventWriter(client, outage_tolerance_seconds=1)
    append = asyncio.create_task(writer.append("side:x", TOKEN, max_events=10))
    for _ in range(200):  # the refused connect marks the outage within milliseconds
        if writer.outage.ongoing:
            break
        await asyncio.sleep(0.01)
    assert writer.outage.ongoing

    started = time.monotonic()
    try:
        await writer.command("SET", "side:hb", "1")
    except RedisConnectionError:
        pass
    else:
        raise AssertionError("a command went through an unreachable Redis")
    assert time.monotonic() - started < 0.1  # not held for the appends' retries
    assert not append.done()  # the append is still being retried
    append.cancel()
    await writer.aclose()
    await client.aclose()


async def test_the_watch_sends_an_answers_heartbeat_set_and_del_with_the_writer(
    redis: aioredis.Redis, settings: Settings
) -> None:
    fast = settings.model_copy(
        update={"task_cancel_poll_seconds": 0.02, "task_heartbeat_interval_seconds": 0.1}
    )
    writer = EventWriter(redis, outage_tolerance_seconds=5)
    watch = Watch(redis, fast, writer)
    task_id = uuid.uuid4().hex
    heartbeat = task_heartbeat_key(fast.redis_prefix, task_id)
    cancelled = asyncio.Event()
    try:
        async with watch.track(task_id, cancelled.set):
            assert writer.round_trips == 1  # the SET went with the writer
            assert await redis.exists(heartbeat)
            await redis.pexpire(heartbeat, 150)
            await asyncio.sleep(0.3)
            assert await redis.pttl(heartbeat) > 500  # the watch's ticks beat it
            await redis.set(task_cancel_key(fast.redis_prefix, task_id), "1")
            await asyncio.wait_for(cancelled.wait(), timeout=0.5)
        assert writer.round_trips == 2  # and the DEL
        assert not await redis.exists(heartbeat)
    finally:
        await watch.close()
        await writer.aclose()
        await redis.delete(task_cancel_key(fast.redis_prefix, task_id))


async def test_a_command_goes_after_the_appends_of_its_batch(redis: aioredis.Redis) -> None:
    writer = EventWriter(redis, outage_tolerance_seconds=5)
    key = f"side:{uuid.uuid4().hex}"
    _, length = await asyncio.gather(
        writer.append(key, TOKEN, max_events=10), writer.command("XLEN", key)
    )
    assert writer.round_trips == 1  # one batch
    assert length == 1  # the append waiting in it went first
    await writer.aclose()


async def test_an_ending_rides_the_shared_writer_of_the_process(redis: aioredis.Redis) -> None:
    writer = EventWriter(redis, outage_tolerance_seconds=5)
    share(writer)  # what the chat worker does at start-up
    stream = TaskStream(redis, f"side:{uuid.uuid4().hex}", "t")  # as an ender makes it
    assert stream.writer is writer
    ending = [ErrorEvent(code="x", message="y")]

    first = await append_ending(stream, ending)

    assert writer.round_trips == 1  # the ending's script went with the writer
    assert await append_ending(stream, ending) == first  # and still ends the stream once
    assert await redis.xlen(stream.key) == 1
    await writer.aclose()
    assert shared_writer(redis) is None  # a closed writer is shared no more
