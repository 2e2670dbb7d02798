"""How a task ends: one transaction (a conditional state transition, the answer, the
credits: `task_settlement`), then the terminal event.

The worker, `cancel` and the reaper can race to end the same task. Each ending is a
conditional UPDATE from the state the caller saw (`running` or `queued`); exactly one
caller wins, and only the winner touches credits and appends the terminal event, so
credits are settled or released exactly once and a reader sees exactly one ending. The
credits are settled in the transition's transaction: an ender that dies leaves both
undone or both done.

SQL is committed before the terminal event is appended: a reader that sees `done` can
fetch the stored message at once. The append is retried while Redis is away and is
written at most once (`streams.endings`); a reader that finds the task settled and its
stream without an ending rebuilds it from SQL. An ending, once started, is shielded from
cancellation: an ender cancelled between the two (a web reader whose client left while
it was failing a task of a dead worker, a worker shutting down) would otherwise leave
the task ended in SQL, where no reaper looks again, and its stream without a terminal
event, so every later reader would wait for one forever.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from redis.asyncio import Redis

from backend.models import Task
from backend.models.tasks import TaskState
from backend.providers.base import ModelSpec
from backend.services.task_settlement import Answer, settle_answer, settle_failure
from backend.settings import Settings
from backend.streams.endings import append_ending_until_written
from backend.streams.task_stream import TaskStream
from schemas.events import (
    CancelledEvent,
    DoneEvent,
    ErrorEvent,
    TaskEvent,
    UsageEvent,
)

__all__ = ["Answer", "cancel", "fail", "succeed", "write_ending"]

P = ParamSpec("P")
T = TypeVar("T")


async def write_ending(redis: Redis, settings: Settings, task_id: str, *events: TaskEvent) -> None:
    """The terminal event (after `usage` for a `done`), written once: retried through a
    Redis outage, never doubled (`streams.endings`)."""
    await append_ending_until_written(
        TaskStream.for_task(redis, settings, task_id),
        list(events),
        give_up_after=settings.stream_retention_seconds,
    )


def runs_to_the_end(ending: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """An ending that, once started, finishes (transition and terminal event) even if its
    caller is cancelled meanwhile; the caller still gets its CancelledError after."""

    @functools.wraps(ending)
    async def shielded(*args: P.args, **kwargs: P.kwargs) -> T:
        running = asyncio.ensure_future(ending(*args, **kwargs))
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            await running
            raise

    return shielded


@runs_to_the_end
async def succeed(
    task: Task, spec: ModelSpec, answer: Answer, *, redis: Redis, settings: Settings
) -> bool:
    ended = await settle_answer(
        task, TaskState.SUCCEEDED, TaskState.RUNNING, spec, answer, redis=redis, settings=settings
    )
    if ended is None:
        return False
    await write_ending(
        redis,
        settings,
        task.id,
        UsageEvent(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens),
        DoneEvent(
            message_id=ended.message_id,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            cost=ended.charged,
            reference=answer.reference,
            finish_reason=answer.finish_reason,
            answer=answer.text if answer.revised else None,
        ),
    )
    return True


@runs_to_the_end
async def cancel(
    task: Task,
    spec: ModelSpec,
    answer: Answer,
    *,
    expected: TaskState,
    redis: Redis,
    settings: Settings,
) -> bool:
    """End a cancelled task, charging only the tokens produced before the cancel."""
    ended = await settle_answer(
        task, TaskState.CANCELLED, expected, spec, answer, redis=redis, settings=settings
    )
    if ended is None:
        return False
    await write_ending(
        redis,
        settings,
        task.id,
        CancelledEvent(
            message_id=ended.message_id,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            cost=ended.charged,
        ),
    )
    return True


@runs_to_the_end
async def fail(
    task: Task,
    code: str,
    message: str,
    *,
    expected: TaskState,
    redis: Redis,
    settings: Settings,
    retry_seconds: float | None = None,
    partial: Answer | None = None,
) -> bool:
    """End a task as failed and release its whole reservation: failures are not charged.
    `partial` (the text a dead worker streamed, from the reaper) is stored as the
    assistant message, which the `error` event names, as `cancelled` names a cancelled
    answer's. The transaction is retried through a database outage for `retry_seconds`
    (default TASK_SETTLE_RETRY_SECONDS; the reaper passes 0: it must not keep a
    heartbeat)."""
    ended = await settle_failure(
        task,
        code,
        message,
        expected=expected,
        partial=partial,
        redis=redis,
        settings=settings,
        retry_seconds=settings.task_settle_retry_seconds
        if retry_seconds is None
        else retry_seconds,
    )
    if ended is None:
        return False
    error = ErrorEvent(code=code, message=message, message_id=ended.message_id)
    await write_ending(redis, settings, task.id, error)
    return True
