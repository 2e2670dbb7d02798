"""A task reader's opening against a real Redis: its lease refresh rides in its
subscription's round trip (issue 16: the reader's opening was three round trips for a
new task, the lease, its refresh and the subscription; it is two)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import Any
from unittest import mock

import pytest
import redis.asyncio as aioredis
from quart import Quart
from redis.asyncio.client import Pipeline

from backend.models import Task
from backend.settings import Settings
from backend.streams.delivery import open_new_task_reader
from backend.streams.hub import StreamHub
from backend.streams.task_stream import TaskStream
from schemas.events import TokenEvent
from tests.support.accounts import create_account


@contextmanager
def round_trips() -> Iterator[list[Any]]:
    """Each round trip this process makes to Redis: a command's name, or a pipeline's
    names as a tuple. The hub's own blocking XREAD is left out."""
    trips: list[Any] = []
    command, execute = aioredis.Redis.execute_command, Pipeline.execute

    async def counted_command(self: aioredis.Redis, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() != "XREAD":
            trips.append(str(args[0]).upper())
        return await command(self, *args, **options)

    async def counted_execute(self: Pipeline, *args: Any, **options: Any) -> Any:
        trips.append(tuple(str(c[0][0]).upper() for c in self.command_stack))
        return await execute(self, *args, **options)

    with (
        mock.patch.object(aioredis.Redis, "execute_command", counted_command),
        mock.patch.object(Pipeline, "execute", counted_execute),
    ):
        yield trips


@pytest.fixture
async def hub(redis: aioredis.Redis, settings: Settings) -> AsyncIterator[StreamHub]:
    stream_hub = StreamHub(redis, settings.redis_prefix, block_ms=2000)
    yield stream_hub
    await stream_hub.stop()


async def new_task(settings: Settings) -> Task:
    account = await create_account(settings, password=False)
    return await Task.create(user_id=account.id, model="m")


async def test_a_new_readers_opening_is_two_round_trips(
    app: Quart, redis: aioredis.Redis, hub: StreamHub, settings: Settings
) -> None:
    task = await new_task(settings)
    stream = TaskStream.for_task(redis, settings, task.id)
    await stream.append(TokenEvent(delta="hi"))
    # The hub's reader and the takeover channel are up, as in a serving process.
    await hub.takeovers.subscriber.wait_subscribed(2.0)
    with round_trips() as trips:
        reader = await open_new_task_reader(task, redis=redis, hub=hub, settings=settings)
        async with aclosing(reader.events()) as events:
            first = await anext(events)
            opening = list(trips)
    assert first is not None and first.payload() == {"delta": "hi"}
    assert opening[0] == "SET"  # the lease, before the response starts
    # The refresh, the hub's wake and the catch-up read: one pipeline.
    assert opening[1:] == [("EVAL", "XADD", "EXPIRE", "XRANGE")]


async def test_a_reader_whose_lease_went_before_it_opened_ends_unsubscribed(
    app: Quart, redis: aioredis.Redis, hub: StreamHub, settings: Settings
) -> None:
    task = await new_task(settings)
    stream = TaskStream.for_task(redis, settings, task.id)
    await stream.append(TokenEvent(delta="hi"))
    reader = await open_new_task_reader(task, redis=redis, hub=hub, settings=settings)
    # Another reader took the stream over before this one listened for takeovers.
    await stream.seize_lease(settings.stream_lease_seconds)
    async with aclosing(reader.events()) as events:
        assert [entry async for entry in events] == []
    assert hub.subscriber_count == 0
    assert not await stream.is_consumed()
