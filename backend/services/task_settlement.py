"""What ending a task writes to SQL: one transaction holding the conditional state
transition, the answer's message and the credits, retried through a database outage.

The transition is an UPDATE from the state the ender saw (`running` or `queued`), so of
the worker, `cancel` and any number of reapers exactly one wins; only the winner stores
a message and settles or releases the hold, in the same transaction, so an ender that
dies leaves both undone or both done. What follows the commit (the terminal event) is
`task_outcomes`' part.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from tortoise import timezone

from backend.models import Message, Task, answer_writes
from backend.models.chats import Role
from backend.models.credits import ReservationState
from backend.models.ids import new_id
from backend.models.tasks import TaskState
from backend.providers.base import FinishReason, ModelSpec
from backend.services import credits
from backend.services.pricing import price
from backend.services.settle_retry import settle_through_outage
from backend.settings import Settings
from schemas.events import Reference


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


@dataclass(frozen=True)
class Ended:
    """What the winning ender stored: the answer's message (if any) and the charge."""

    message_id: str | None
    charged: int


async def store_message(task: Task, message_id: str, answer: Answer) -> None:
    """The assistant message of `answer`, inside the ending's transaction."""
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


def message_id_for(task: Task, answer: Answer | None) -> str | None:
    """A new message id when there is text to keep and a session to keep it in."""
    return new_id() if task.session_id is not None and answer and answer.text else None


async def settle_answer(
    task: Task,
    state: TaskState,
    expected: TaskState,
    spec: ModelSpec,
    answer: Answer,
    *,
    redis: Redis,
    settings: Settings,
) -> Ended | None:
    """Transition the task, store the answer and charge its price (capped by the hold,
    the rest refunded), in one transaction retried through a database outage; None if
    another ender won the race. The usual case is one trip to the database
    (`answer_writes.settle`); a lost race or a charge above the hold is the ORM's."""
    cost = price(spec, answer.prompt_tokens, answer.completion_tokens)
    message_id = message_id_for(task, answer)
    ending = answer_writes.Settlement(
        task_id=task.id,
        state=state,
        expected=expected,
        reservation_id=task.reservation_id,
        cost=cost,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        message_id=message_id,
        session_id=task.session_id,
        content=[{"type": "text", "text": answer.text}],
        reference=answer.reference.model_dump(mode="json") if answer.reference else None,
    )

    async def attempt() -> Ended | None:
        if await credits.retried(lambda: answer_writes.settle(ending)):
            return Ended(message_id, cost)
        # Nothing written: another ender won, or the hold is not there or is below the
        # cost (capped); the ORM's transaction says which.
        return await credits.atomically(run)

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
            charged = await credits.close_reservation(
                task.reservation_id, ReservationState.SETTLED, cost
            )
            if charged != cost:
                await Task.filter(id=task.id).update(cost=charged)
        if message_id:
            await store_message(task, message_id, answer)
        return Ended(message_id, charged)

    return await settle_through_outage(
        attempt,
        redis=redis,
        settings=settings,
        task_id=task.id,
        retry_seconds=settings.task_settle_retry_seconds,
    )


async def settle_failure(
    task: Task,
    code: str,
    message: str,
    *,
    expected: TaskState,
    partial: Answer | None,
    redis: Redis,
    settings: Settings,
    retry_seconds: float,
) -> Ended | None:
    """Transition the task to `failed` and release the whole hold (failures are not
    charged), storing `partial` (what a dead worker had streamed) as the assistant
    message, in one transaction retried through a database outage for `retry_seconds`;
    None if another ender won."""
    message_id = message_id_for(task, partial)

    async def run() -> Ended | None:
        kept = (
            {"message_id": message_id, "completion_tokens": partial.completion_tokens}
            if message_id and partial
            else {}
        )
        won = await Task.filter(id=task.id, state=expected).update(
            state=TaskState.FAILED,
            finished_at=timezone.now(),
            error_code=code,
            error_message=message,
            **kept,
        )
        if not won:
            return None
        if task.reservation_id is not None:
            await credits.close_reservation(task.reservation_id, ReservationState.RELEASED, 0)
        if message_id and partial:
            await store_message(task, message_id, partial)
        return Ended(message_id, 0)

    return await settle_through_outage(
        lambda: credits.atomically(run),
        redis=redis,
        settings=settings,
        task_id=task.id,
        retry_seconds=retry_seconds,
    )
