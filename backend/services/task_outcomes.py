"""How a task ends: one conditional state transition, then credits, then the terminal event.

The worker, `cancel` and the reaper can race to end the same task. Each ending is a
conditional UPDATE from the state the caller saw (`running` or `queued`); exactly one
caller wins, and only the winner touches credits and appends the terminal event, so
credits are settled or released exactly once and a reader sees exactly one ending.

SQL is committed before the terminal event is appended: a reader that sees `done` can
fetch the stored message at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from tortoise import timezone
from tortoise.transactions import in_transaction

from backend.models import Message, Task
from backend.models.chats import Role
from backend.models.ids import new_id
from backend.models.tasks import TaskState
from backend.providers.base import ModelSpec
from backend.services import credits
from backend.services.pricing import price
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import CancelledEvent, DoneEvent, ErrorEvent, UsageEvent


@dataclass(frozen=True)
class Answer:
    """What a generation produced, as far as it got."""

    text: str
    prompt_tokens: int
    completion_tokens: int


async def _record(
    task: Task, state: TaskState, expected: TaskState, spec: ModelSpec, answer: Answer
) -> tuple[bool, str | None, int]:
    """Transition the task and store the answer in one transaction; False if we lost the race."""
    cost = price(spec, answer.prompt_tokens, answer.completion_tokens)
    message_id = new_id() if task.session_id is not None and answer.text else None
    async with in_transaction():
        won = await Task.filter(id=task.id, state=expected).update(
            state=state,
            finished_at=timezone.now(),
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            cost=cost,
            message_id=message_id,
        )
        if won and message_id:
            await Message.create(
                id=message_id,
                session_id=task.session_id,
                role=Role.ASSISTANT,
                content=[{"type": "text", "text": answer.text}],
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                task_id=task.id,
            )
    return bool(won), message_id, cost


async def _charge(task: Task, cost: int) -> int:
    """Settle the reservation to `cost`; the hold caps the charge, the rest is refunded."""
    if task.reservation_id is None:
        return 0
    charged = await credits.settle(task.reservation_id, cost)
    if charged != cost:
        await Task.filter(id=task.id).update(cost=charged)
    return charged


async def succeed(
    task: Task, spec: ModelSpec, answer: Answer, *, redis: Redis, settings: Settings
) -> bool:
    won, message_id, cost = await _record(
        task, TaskState.SUCCEEDED, TaskState.RUNNING, spec, answer
    )
    if not won:
        return False
    charged = await _charge(task, cost)
    stream = TaskStream.for_task(redis, settings, task.id)
    await stream.append(
        UsageEvent(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)
    )
    await stream.append(
        DoneEvent(
            message_id=message_id,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            cost=charged,
        )
    )
    return True


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
    won, message_id, cost = await _record(task, TaskState.CANCELLED, expected, spec, answer)
    if not won:
        return False
    charged = await _charge(task, cost)
    await TaskStream.for_task(redis, settings, task.id).append(
        CancelledEvent(
            message_id=message_id,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            cost=charged,
        )
    )
    return True


async def fail(
    task: Task,
    code: str,
    message: str,
    *,
    expected: TaskState,
    redis: Redis,
    settings: Settings,
) -> bool:
    """End a task as failed and release its whole reservation: failures are not charged."""
    won = await Task.filter(id=task.id, state=expected).update(
        state=TaskState.FAILED,
        finished_at=timezone.now(),
        error_code=code,
        error_message=message,
    )
    if not won:
        return False
    if task.reservation_id is not None:
        await credits.release(task.reservation_id)
    await TaskStream.for_task(redis, settings, task.id).append(
        ErrorEvent(code=code, message=message)
    )
    return True
