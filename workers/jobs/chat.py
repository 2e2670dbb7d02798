"""The chat queue's job: generate one task's answer and stream it to the task's events."""

from __future__ import annotations

import logging
from typing import Any

from backend.errors import ApiError
from backend.models import Task
from backend.models.task_claim import claim_queued
from backend.models.tasks import TaskState
from backend.providers.base import (
    ChatMessage,
    ChatRequest,
    FinishReason,
    ProviderError,
    SamplingParams,
)
from backend.providers.registry import get_model, provider_for
from backend.providers.tokens import count_tokens
from backend.search.store import SearchStoreUnavailable
from backend.services import task_outcomes
from backend.services.task_outcomes import Answer
from backend.services.upload_access import inline_uploads
from backend.settings import Settings
from backend.streams.event_writer import StreamUnavailable
from backend.streams.task_stream import TaskStream
from schemas.events import QueuedEvent, ReferenceEvent, TokenEvent
from workers.jobs import knowledge, task_metrics
from workers.jobs.citing import with_citations
from workers.jobs.claim_retry import claim_through_outage
from workers.jobs.coalescing import CoalesceWindow
from workers.jobs.knowledge import KnowledgeTurn
from workers.jobs.relay import Ending, Relay
from workers.jobs.watch import Watch

log = logging.getLogger("sluice.worker.chat")

INTERNAL_ERROR = "internal_error"
RETRIEVAL_FAILED = "retrieval_failed"
SEARCH_UNAVAILABLE = "search_unavailable"
STREAM_UNAVAILABLE = "stream_unavailable"


def watch_of(ctx: dict[str, Any]) -> Watch:
    """The process's watch loop (made at the worker's startup: a job's ctx is a copy of
    the worker's), or one for this ctx when the job runs without a worker."""
    if "watch" not in ctx:
        ctx["watch"] = Watch(ctx["redis"], ctx["settings"], ctx.get("event_writer"))
    return ctx["watch"]


async def claim(task_id: str) -> Task | None:
    """Move the task from queued to running; None if it is not queued any more.

    This makes the job idempotent: a duplicate or late delivery of the same job, or one
    for a task already cancelled or reaped, does nothing. The claimed row comes back from
    the UPDATE itself (one statement, not an UPDATE and a SELECT), written once per
    process (backend/models/task_claim.py): the first token waits for it.
    """
    return await claim_queued(task_id)


async def chat_request(task: Task, settings: Settings) -> ChatRequest:
    """The turn as it was priced, with uploaded images inlined for the provider: only the
    task's own user's uploads, whatever the stored row names."""
    request = task.request
    return ChatRequest(
        model=get_model(task.model),
        messages=[
            ChatMessage(
                role=m["role"], content=await inline_uploads(m["content"], task.user_id, settings)
            )
            for m in request["messages"]
        ],
        params=SamplingParams(**request.get("params", {})),
    )


def with_knowledge(answer: Answer, turn: KnowledgeTurn, usage: Any, plan: dict) -> Answer:
    """The answer's charge with the retrieved context and the rewrite call counted, and
    its final reference (unless the assistant hides quotes)."""
    prompt_tokens = answer.prompt_tokens if usage else turn.prompt_tokens
    return Answer(
        text=answer.text,
        prompt_tokens=prompt_tokens + turn.rewrite_usage.prompt_tokens,
        completion_tokens=answer.completion_tokens + turn.rewrite_usage.completion_tokens,
        reference=knowledge.cited(turn.reference, answer.text) if plan["show_quote"] else None,
        finish_reason=answer.finish_reason,
        revised=answer.revised,
    )


async def answer_without_model(
    task: Task, turn: KnowledgeTurn, plan: dict, stream: TaskStream, settings: Settings
) -> str:
    """Nothing relevant was found: the assistant's `empty_response` is the answer, and
    nothing is generated or charged for generation (only a rewrite call, if one ran)."""
    text = turn.empty_answer or ""
    redis = stream.redis
    await stream.append(TokenEvent(delta=text))
    answer = Answer(
        text=text,
        prompt_tokens=turn.rewrite_usage.prompt_tokens,
        completion_tokens=turn.rewrite_usage.completion_tokens,
        reference=turn.reference if plan["show_quote"] else None,
    )
    await task_outcomes.succeed(task, get_model(task.model), answer, redis=redis, settings=settings)
    return "succeeded"


@task_metrics.counted
async def generate_answer(ctx: dict[str, Any], task_id: str) -> str:
    settings: Settings = ctx["settings"]
    redis = ctx["redis"]
    task = await claim_through_outage(
        claim, task_id, retry_seconds=settings.task_settle_retry_seconds
    )
    if task is None:
        return "skipped: task is not queued"
    turn: KnowledgeTurn | None = None
    clock = task_metrics.TokenClock(task.created_at)
    try:
        request = await chat_request(task, settings)
        stream = TaskStream.for_task(redis, settings, task_id, ctx.get("event_writer"))
        plan = task.request.get("knowledge")
        if plan is not None:
            # A rewrite call and the search can outlast the heartbeat TTL: beaten meanwhile,
            # or the reaper takes the live worker for dead (a cancel is seen once the
            # answer streams: the flag stays set).
            async with watch_of(ctx).track(task_id, lambda: None):
                turn = await knowledge.prepare(request, plan)
            request = turn.request
            if plan["show_quote"]:
                # Sources first: a client shows them before (and while) the answer streams.
                await stream.append(ReferenceEvent(**turn.reference.model_dump()))
            if turn.empty_answer is not None:
                return await answer_without_model(task, turn, plan, stream, settings)

        async def send(text: str) -> None:
            clock.token()
            await stream.append_token(text)

        async def queued(position: int) -> None:
            await stream.append(QueuedEvent(position=position))

        watch = watch_of(ctx)
        provider = provider_for(request.model)
        # A provider's bursts (a network read at a time) when it has them: see Relay.
        bursts = getattr(provider, "bursts", None)
        relay = Relay(
            bursts(request) if bursts is not None else provider.stream(request),
            send,
            window=CoalesceWindow.from_settings(settings).following(lambda: watch.generations),
            on_queued=queued,
        )
        # The provider's request goes out while the heartbeat is set, not after it.
        relay.start()
        try:
            async with watch.track(task_id, relay.cancel):
                relayed = await relay.run()
        finally:
            await relay.stop()
    except (ApiError, ProviderError) as error:
        # Retrieval refused or failed (a dataset's embedding model unreachable, a reranker
        # not configured any more) or the rewrite call failed: the reason, not a crash.
        await task_outcomes.fail(
            task,
            str(error.code) if isinstance(error, ProviderError) else RETRIEVAL_FAILED,
            f"Searching the knowledge bases failed: {error.message}",
            expected=TaskState.RUNNING,
            redis=redis,
            settings=settings,
        )
        return "failed"
    except SearchStoreUnavailable as error:
        # Elasticsearch is down or refuses us: the operator's to fix, the user's to retry.
        await task_outcomes.fail(
            task,
            SEARCH_UNAVAILABLE,
            f"Searching the knowledge bases failed: the search store is unavailable "
            f"({error}); try again",
            expected=TaskState.RUNNING,
            redis=redis,
            settings=settings,
        )
        return "failed"
    except StreamUnavailable as error:
        # Redis stayed away longer than REDIS_OUTAGE_TOLERANCE_SECONDS mid-answer (the
        # appends were retried until then): the operator's to fix, the user's to retry.
        log.error("giving up the answer: %s", error, extra={"task_id": task_id})
        await task_outcomes.fail(
            task,
            STREAM_UNAVAILABLE,
            f"The answer could not be delivered: {error}; try again",
            expected=TaskState.RUNNING,
            redis=redis,
            settings=settings,
        )
        return "failed"
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
        finish_reason=usage.finish_reason if usage else FinishReason.STOP,
    )
    generated = answer.completion_tokens  # the answer's own, before a rewrite call's
    if turn is not None:
        if relayed.ending is not Ending.CANCELLED:
            answer = await with_citations(
                answer, turn.reference, task.request["knowledge"], settings
            )
        answer = with_knowledge(answer, turn, usage, task.request["knowledge"])
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
    clock.finished(generated)
    return "succeeded"
