"""How a task ends: one transaction (a conditional state transition, the answer, the
credits), then the terminal event.

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
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from redis.asyncio import Redis
from tortoise import timezone

from backend.models import Message, Task
from backend.models.chats import Role
from backend.models.credits import ReservationState
from backend.models.ids import new_id
from backend.models.tasks import TaskState
from backend.providers.base import FinishReason, ModelSpec
from backend.services import credits
from backend.services.pricing import price
from backend.services.settle_retry import settle_through_outage
from backend.settings import Settings
from backend.streams.endings import append_ending_until_written
from backend.streams.task_stream import TaskStream
from schemas.events import (
    CancelledEvent,
    DoneEvent,
    ErrorEvent,
    Reference,
    TaskEvent,
    UsageEvent,
)


@dataclass(frozen=True)
class Answer:
    """What a generation produced, as far as it got."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    # An answer over knowledge bases: its sources (schemas.events.Reference), stored with
    # the message and sent with `done`; None otherwise (or with show_quote off).
    reference: Reference | None = None
    # Why generation stopped, as the provider said: sent with `done` (OpenAI's
    # `finish_reason` is "length" when max_tokens cut the answer).
    finish_reason: FinishReason = FinishReason.STOP
    # True when `text` is not what was streamed (citations inserted after generation):
    # `done` then carries the whole text.
    revised: bool = False


P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Ended:
    """What the winning ender stored: the answer's message (if any) and the charge."""

    message_id: str | None
    charged: int


async def _end(
    task: Task,
    state: TaskState,
    expected: TaskState,
    spec: ModelSpec,
    answer: Answer,
    *,
    redis: Redis,
    settings: Settings,
) -> Ended | None:
    """Transition the task, store the answer and settle its credits, in one transaction
    (retried through a database outage); None if another ender won the race."""
    cost = price(spec, answer.prompt_tokens, answer.completion_tokens)
    message_id = new_id() if task.session_id is not None and answer.text else None

    async def run() -> Ended | None:
        charged = cost
        won = await Task.filter(id=task.id, state=expected).update(
            state=state,
            finished_at=timezone.now(),
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            cost=cost,
            message_id=message_id,
        )
        if not won:
            return None
        if task.reservation_id is not None:
            # The hold caps the charge; the rest is refunded.
            charged = await credits.close_reservation(
                task.reservation_id, ReservationState.SETTLED, cost
            )
            if charged != cost:
                await Task.filter(id=task.id).update(cost=charged)
        if message_id:
            await Message.create(
                id=message_id,
                session_id=task.session_id,
                role=Role.ASSISTANT,
                content=[{"type": "text", "text": answer.text}],
                reference=answer.reference.model_dump(mode="json") if answer.reference else None,
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                task_id=task.id,
            )
        return Ended(message_id, charged)

    return await settle_through_outage(
        lambda: credits.atomically(run),
        redis=redis,
        settings=settings,
        task_id=task.id,
        retry_seconds=settings.task_settle_retry_seconds,
    )


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
    ended = await _end(
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
    ended = await _end(
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
) -> bool:
    """End a task as failed and release its whole reservation: failures are not charged.
    The transaction is retried through a database outage for `retry_seconds` (default
    TASK_SETTLE_RETRY_SECONDS; the reaper passes 0: it must not keep a heartbeat)."""

    async def run() -> int:
        won = await Task.filter(id=task.id, state=expected).update(
            state=TaskState.FAILED,
            finished_at=timezone.now(),
            error_code=code,
            error_message=message,
        )
        if won and task.reservation_id is not None:
            await credits.close_reservation(task.reservation_id, ReservationState.RELEASED, 0)
        return won

    settled = await settle_through_outage(
        lambda: credits.atomically(run),
        redis=redis,
        settings=settings,
        task_id=task.id,
        retry_seconds=settings.task_settle_retry_seconds
        if retry_seconds is None
        else retry_seconds,
    )
    if not settled:
        return False
    await write_ending(redis, settings, task.id, ErrorEvent(code=code, message=message))
    return True
