"""A task stream's ending: exactly one terminal event, however Redis behaves.

The terminal event (with `usage` before a `done`) is appended by one Lua script that
first looks at the stream's last entry: if it is terminal already, nothing is added.
So the ending may be written by whoever gets there first, and any number of times:

- the ender (worker, cancel, reaper) after its SQL transition; it retries through a
  Redis outage (`append_ending_until_written`), since a failed append whose reply was
  lost may or may not have been applied, and a retry must not write a second ending;
- a reader that finds the task settled in SQL while its stream has no terminal event
  (its ender died or gave up while Redis was away): `ending_from_sql` rebuilds the
  event from the stored row, so no reader waits on heartbeats for a settled task.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.models import Message, Task
from backend.models.tasks import TaskState
from backend.outage import Outage
from backend.streams.task_stream import TaskStream, text
from schemas.events import (
    CancelledEvent,
    DoneEvent,
    ErrorEvent,
    EventType,
    Reference,
    TaskEvent,
    UsageEvent,
)

log = logging.getLogger("sluice.streams.endings")

# KEYS[1] the stream; ARGV: max events, expiry seconds, then (type, data) pairs. Returns
# the id of the terminal entry, the existing one if there was one.
TERMINAL_TABLE = ", ".join(f"{t.value} = true" for t in EventType if t.terminal)
APPEND_ENDING = (
    "local TERMINAL = {"
    + TERMINAL_TABLE
    + "}"
    + """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'type' and TERMINAL[fields[i + 1]] then
      return last[1][1]
    end
  end
end
local id
for i = 3, #ARGV, 2 do
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                  'type', ARGV[i], 'data', ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return id
"""
)
# Errors after which the append may be retried: the connection, not the command, failed.
RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)


async def append_ending(stream: TaskStream, events: list[TaskEvent]) -> str:
    """Append `events` (the last one terminal) in one step unless the stream already ends;
    returns the terminal entry's id."""
    assert events and events[-1].type.terminal, "an ending ends with a terminal event"
    args: list[str | int] = [stream.max_events, stream.retention_seconds]
    for event in events:
        args += [event.type.value, event.model_dump_json(exclude={"type"})]
    # Through the stream's writer: in a worker, with the token appends' next round trip.
    return text(await stream.writer.command("EVAL", APPEND_ENDING, 1, stream.key, *args))


async def append_ending_until_written(
    stream: TaskStream, events: list[TaskEvent], *, give_up_after: float
) -> str | None:
    """`append_ending`, retried with capped back-off while Redis is unreachable (logged
    once per outage); None if it still failed after `give_up_after` seconds (by then the
    stream would have expired anyway, and readers rebuild the ending from SQL)."""
    outage = Outage("Redis (appending a task's terminal event)", log)
    deadline = time.monotonic() + give_up_after
    while True:
        try:
            entry_id = await append_ending(stream, events)
        except RETRYABLE as error:
            if time.monotonic() >= deadline:
                log.error("gave up appending the ending of task %s: %s", stream.task_id, error)
                return None
            await outage.failed(error)
            continue
        outage.recovered()
        return entry_id


async def ending_from_sql(task: Task) -> list[TaskEvent] | None:
    """The ending a settled task's stream must carry, rebuilt from its stored row; None
    while the task is still queued or running. A `done` carries the stored text whole
    (`answer`): tokens streamed before an outage may be missing from the stream."""
    if task.state is TaskState.FAILED:
        return [
            ErrorEvent(
                code=task.error_code or "failed",
                message=task.error_message or "",
                message_id=task.message_id,
            )
        ]
    if task.state is TaskState.CANCELLED:
        return [
            CancelledEvent(
                message_id=task.message_id,
                prompt_tokens=task.prompt_tokens,
                completion_tokens=task.completion_tokens,
                cost=task.cost,
            )
        ]
    if task.state is not TaskState.SUCCEEDED:
        return None
    message = await Message.get_or_none(id=task.message_id) if task.message_id else None
    stored = "".join(
        part.get("text", "")
        for part in (message.content if message else [])
        if isinstance(part, dict)
    )
    return [
        UsageEvent(prompt_tokens=task.prompt_tokens, completion_tokens=task.completion_tokens),
        DoneEvent(
            message_id=task.message_id,
            prompt_tokens=task.prompt_tokens,
            completion_tokens=task.completion_tokens,
            cost=task.cost,
            reference=Reference.model_validate(message.reference)
            if message and message.reference
            else None,
            answer=stored if message else None,
        ),
    ]


async def settle_stream(stream: TaskStream, task: Task) -> bool:
    """Give a settled task's stream its ending if it has none; True if the task is settled
    (the stream ends now, by this call or an earlier one)."""
    events = await ending_from_sql(task)
    if events is None:
        return False
    await append_ending(stream, events)
    return True
