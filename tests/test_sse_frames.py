"""How task events become SSE bytes: the lean frame encoding, and events that are already
waiting going out in one write (each still its own frame with its own id)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from quart import Quart
from sse_starlette import ServerSentEvent

from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from backend.streams.sse import MAX_EVENTS_PER_WRITE, SEPARATOR, encode_entry
from backend.streams.task_stream import StreamEntry, TaskStream
from schemas.events import DoneEvent, EventType, TokenEvent
from tests.support.accounts import Account, create_account
from tests.test_sse_asgi import AsgiCall


@pytest.mark.parametrize(
    "delta",
    ["plain", "two\nlines", "crlf\r\nend", 'quote " and \\ backslash', "中文 ✓ \u2028 \x00", ""],
)
def test_frames_are_byte_for_byte_what_sse_starlette_encodes(delta: str) -> None:
    data = TokenEvent(delta=delta).model_dump_json(exclude={"type"})
    entry = StreamEntry(id="1700000000000-3", type=EventType.TOKEN, data=data)
    expected = ServerSentEvent(id=entry.id, event=entry.type, data=data, sep=SEPARATOR).encode()
    assert encode_entry(entry) == expected


def test_data_with_a_raw_line_break_is_split_into_data_lines() -> None:
    entry = StreamEntry(id="1-0", type=EventType.TOKEN, data="a\nb")
    assert encode_entry(entry) == b"id: 1-0\nevent: token\ndata: a\ndata: b\n\n"


@pytest.fixture
async def account(app: Quart, settings: Settings) -> Account:
    return await create_account(settings)


async def test_waiting_events_go_out_in_one_write_each_its_own_frame(
    app: Quart, account: Account, redis: aioredis.Redis, settings: Settings
) -> None:
    task = await Task.create(user_id=account.id, model="m", state=TaskState.RUNNING)
    stream = TaskStream.for_task(redis, settings, task.id)
    ids = [await stream.append(TokenEvent(delta=f"t{i} ")) for i in range(10)]
    call = AsgiCall(app, f"/api/v1/tasks/{task.id}/stream", account.access_token)
    running = call.run()
    await asyncio.wait_for(call.body_received.wait(), 5)
    await asyncio.sleep(0.2)
    ids.append(
        await stream.append(
            DoneEvent(message_id=None, prompt_tokens=1, completion_tokens=10, cost=0)
        )
    )
    await asyncio.wait_for(running, 5)
    writes = [m["body"] for m in call.messages[1:] if m.get("body")]
    # The opening frame, the ten waiting tokens together, then `done` on its own.
    assert len(writes) == 3
    assert writes[1].count(b"event: token") == 10
    frames = call.body.strip().split("\n\n")[1:]
    assert [f.split("\n")[0] for f in frames] == [f"id: {i}" for i in ids]
    assert [f.split("\n")[1] for f in frames] == ["event: token"] * 10 + ["event: done"]
    assert await stream.is_consumed()


async def test_a_write_holds_at_most_its_limit_and_the_terminal_event_ends_it(
    app: Quart, account: Account, redis: aioredis.Redis, settings: Settings
) -> None:
    task = await Task.create(user_id=account.id, model="m", state=TaskState.RUNNING)
    stream = TaskStream.for_task(redis, settings, task.id)
    count = MAX_EVENTS_PER_WRITE + 5
    for i in range(count):
        await stream.append(TokenEvent(delta=str(i)))
    await stream.append(DoneEvent(message_id=None, prompt_tokens=1, completion_tokens=1, cost=0))
    call = AsgiCall(app, f"/api/v1/tasks/{task.id}/stream", account.access_token)
    await asyncio.wait_for(call.run(), 5)
    writes = [m["body"] for m in call.messages[1:] if m.get("body")]
    assert [w.count(b"\n\n") for w in writes[1:]] == [MAX_EVENTS_PER_WRITE, 6]
    assert b"event: done" in writes[-1]
    assert call.body.count("event: token") == count
    assert await stream.is_consumed()
