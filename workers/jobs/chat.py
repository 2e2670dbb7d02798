"""The chat queue's job: generate one task's answer and stream it to the task's events."""

from __future__ import annotations

import logging
from typing import Any

from tortoise import timezone
from tortoise.expressions import F

from backend.models import Task
from backend.models.tasks import TaskState
from backend.providers.base import ChatMessage, ChatRequest, ProviderError, SamplingParams
from backend.providers.registry import get_model, provider_for
from backend.providers.tokens import count_tokens
from backend.services import task_outcomes
from backend.services.task_outcomes import Answer
from backend.services.upload_access import inline_uploads
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import QueuedEvent, TokenEvent
from workers.jobs.relay import Ending, Relay
from workers.jobs.watch import Watch

log = logging.getLogger("sluice.worker.chat")

INTERNAL_ERROR = "internal_error"


def watch_of(ctx: dict[str, Any]) -> Watch:
    """The process's watch loop, created on first use."""
    if "watch" not in ctx:
        ctx["watch"] = Watch(ctx["redis"], ctx["settings"])
    return ctx["watch"]


async def claim(task_id: str) -> Task | None:
    """Move the task from queued to running; None if it is not queued any more.

    This makes the job idempotent: a duplicate or late delivery of the same job, or one
    for a task already cancelled or reaped, does nothing.
    """
    claimed = await Task.filter(id=task_id, state=TaskState.QUEUED).update(
        state=TaskState.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
    )
    return await Task.get(id=task_id) if claimed else None


async def chat_request(task: Task) -> ChatRequest:
    """The turn as it was priced, with uploaded images inlined for the provider: only the
    task's own user's uploads, whatever the stored row names."""
    request = task.request
    return ChatRequest(
        model=get_model(task.model),
        messages=[
            ChatMessage(role=m["role"], content=await inline_uploads(m["content"], task.user_id))
            for m in request["messages"]
        ],
        params=SamplingParams(**request.get("params", {})),
    )


async def generate_answer(ctx: dict[str, Any], task_id: str) -> str:
    settings: Settings = ctx["settings"]
    redis = ctx["redis"]
    task = await claim(task_id)
    if task is None:
        return "skipped: task is not queued"
    try:
        request = await chat_request(task)
        stream = TaskStream.for_task(redis, settings, task_id, ctx.get("event_writer"))

        async def send(text: str) -> None:
            await stream.append(TokenEvent(delta=text))

        async def queued(position: int) -> None:
            await stream.append(QueuedEvent(position=position))

        relay = Relay(
            provider_for(request.model).stream(request),
            send,
            window=settings.task_coalesce_ms / 1000,
            on_queued=queued,
        )
        async with watch_of(ctx).track(task_id, relay.cancel):
            relayed = await relay.run()
    except Exception:
        log.exception("generation crashed", extra={"task_id": task_id})
        await task_outcomes.fail(
            task,
            INTERNAL_ERROR,
            "The answer could not be generated because of an internal error; try again",
            expected=TaskState.RUNNING,
            redis=redis,
            settings=settings,
        )
        return "failed"

    if relayed.ending is Ending.FAILED:
        error = relayed.error
        if isinstance(error, ProviderError):
            code, message = str(error.code), error.message
        else:
            log.error("provider stream crashed", exc_info=error, extra={"task_id": task_id})
            code = INTERNAL_ERROR
            message = "The model stream failed unexpectedly; try again"
        await task_outcomes.fail(
            task, code, message, expected=TaskState.RUNNING, redis=redis, settings=settings
        )
        return "failed"

    usage = relayed.usage
    answer = Answer(
        text=relayed.answer,
        prompt_tokens=usage.prompt_tokens if usage else task.request.get("prompt_tokens", 0),
        completion_tokens=usage.completion_tokens if usage else count_tokens(relayed.answer),
    )
    if relayed.ending is Ending.CANCELLED:
        await task_outcomes.cancel(
            task,
            request.model,
            answer,
            expected=TaskState.RUNNING,
            redis=redis,
            settings=settings,
        )
        return "cancelled"
    await task_outcomes.succeed(task, request.model, answer, redis=redis, settings=settings)
    return "succeeded"
