"""A reader's ending when its client closes on the terminal event, against a real Redis.

Most clients close the connection once they read `done`, which cancels the request while
the reader's consume-and-release script is on its way. The script runs to its end
regardless (shielded), marks the stream consumed and releases the lease, and nothing else
is sent: the reader's `close` sent a second release on most answers (issue 16, sixth
pass)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
import redis.asyncio as aioredis
from quart import Quart

from backend.models import Task
from backend.settings import Settings
from backend.streams.delivery import open_new_task_reader
from backend.streams.hub import StreamHub
from backend.streams.task_stream import TaskStream
from schemas.events import DoneEvent, TaskEvent, TokenEvent
from tests.support.accounts import create_account


@contextmanager
def evals() -> Iterator[tuple[list[str], asyncio.Event]]:
    """The EVALs this process sends (each script's first line), and an event set as one
    is sent."""
    sent: list[str] = []
    sending = asyncio.Event()
    command = aioredis.Redis.execute_command

    async def counted(self: aioredis.Redis, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() == "EVAL":
            sent.append(str(args[1]).strip().splitlines()[0])
            sending.set()
        return await command(self, *args, **options)

    with mock.patch.object(aioredis.Redis, "execute_command", counted):
        yield sent, sending


@pytest.fixture
async def hub(redis: aioredis.Redis, settings: Settings) -> AsyncIterator[StreamHub]:
    stream_hub = StreamHub(redis, settings.redis_prefix, block_ms=2000)
    yield stream_hub
    await stream_hub.stop()


async def until(condition: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def answered_task(
    redis: aioredis.Redis, settings: Settings, *events: TaskEvent
) -> tuple[Task, TaskStream]:
    """A task of a new user whose stream holds `events`."""
    account = await create_account(settings, password=False)
    task = await Task.create(user_id=account.id, model="m")
    stream = TaskStream.for_task(redis, settings, task.id)
    for event in events:
        await stream.append(event)
    return task, stream


async def test_a_client_closing_on_done_costs_one_script(
    app: Quart, redis: aioredis.Redis, hub: StreamHub, settings: Settings
) -> None:
    task, stream = await answered_task(
        redis,
        settings,
        TokenEvent(delta="hi"),
        DoneEvent(message_id=None, prompt_tokens=1, completion_tokens=1, cost=0),
    )
    await hub.takeovers.subscriber.wait_subscribed(2.0)
    reader = await open_new_task_reader(task, redis=redis, hub=hub, settings=settings)
    events = reader.events()
    token, done = await anext(events), await anext(events)
    assert token is not None and done is not None and done.terminal
    with evals() as (sent, sending):
        # The response asks for what follows the terminal entry: the reader consumes,
        # and the client's close cancels the request while the script is on its way.
        ending = asyncio.create_task(anext(events, None))
        await sending.wait()
        ending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ending
        await until(stream.is_consumed)
        await until(lambda: stream.acquire_lease(5))  # released: a resume may take it
    await events.aclose()
    assert len(sent) == 1 and sent[0].startswith("redis.call('SET'"), sent
    assert reader.closed and hub.subscriber_count == 0


async def test_a_client_reading_on_costs_one_script_too(
    app: Quart, redis: aioredis.Redis, hub: StreamHub, settings: Settings
) -> None:
    task, stream = await answered_task(
        redis, settings, DoneEvent(message_id=None, prompt_tokens=1, completion_tokens=0, cost=0)
    )
    reader = await open_new_task_reader(task, redis=redis, hub=hub, settings=settings)
    with evals() as (sent, _):
        entries = [entry async for entry in reader.events()]
    assert [entry.terminal for entry in entries if entry is not None] == [True]
    # The consume alone (the opening's lease refresh rides the subscription's pipeline).
    assert len(sent) == 1 and sent[0].startswith("redis.call('SET'"), sent
    assert await stream.is_consumed() and await stream.acquire_lease(5)
