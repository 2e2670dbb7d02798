"""Chat tasks: starting a turn, reading its status, cancelling it.

Starting a turn records the user's message, assembles and prices the prompt, reserves
the worst case (prompt + max output at the model's price) and enqueues the generation
on the chat queue. The assembled messages are stored on the task, so the worker sends
exactly what was priced. Generation never runs in the web process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis

from backend import job_queue
from backend.constants import CHAT_QUEUE, queue_name, task_cancel_key, task_lease_key
from backend.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from backend.models import ChatSession, Task, User, answer_writes
from backend.models.ids import new_id
from backend.models.lean_reads import owned_session, owned_task
from backend.models.tasks import TaskState
from backend.providers.base import Capability, ChatMessage, ModelSpec, SamplingParams
from backend.providers.registry import default_model, get_model
from backend.providers.tokens import count_message_tokens
from backend.services import credits, knowledge_turns, task_outcomes
from backend.services.assistants import can_chat_with
from backend.services.context import build_context, output_tokens
from backend.services.pricing import price
from backend.services.upload_access import authorize_parts, require_owned
from backend.settings import Settings
from backend.streams.task_stream import new_lease_token

GENERATE_ANSWER_JOB = "generate_answer"
SAMPLING_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def has_images(parts: list[dict[str, Any]]) -> bool:
    return any(part.get("type") in ("image", "image_url") for part in parts)


def require_vision(spec: ModelSpec) -> None:
    if Capability.VISION not in spec.capabilities:
        raise BadRequest(
            f"Model '{spec.id}' reads text only and cannot take images: remove the image "
            "parts or use an assistant whose llm.model_name is a vision model"
        )


def sampling(llm: dict[str, Any], spec: ModelSpec) -> SamplingParams:
    """The assistant's sampling settings, with max_tokens capped by the model's output limit."""
    return SamplingParams(
        **{name: llm[name] for name in SAMPLING_FIELDS if llm.get(name) is not None},
        max_tokens=output_tokens(llm, spec),
    )


@dataclass
class ReaderLease:
    """The lease of a new task's stream for the request that streams it (SSE), taken by
    the enqueue's script (`job_queue.KeyClaim`): a SET of its own was one more Redis
    round trip per streamed answer. `token` stays None when it was not taken; the
    reader then takes it as before (`streams.delivery.open_new_task_reader`)."""

    seconds: float
    token: str | None = None


def message_dict(message: ChatMessage) -> dict[str, Any]:
    return {"role": message.role, "content": message.content}


async def start(
    user: User,
    *,
    spec: ModelSpec,
    messages: list[ChatMessage],
    params: SamplingParams,
    session: ChatSession | None,
    user_parts: list[dict[str, Any]] | None,
    redis: ArqRedis,
    settings: Settings,
    knowledge: dict[str, Any] | None = None,
    knowledge_tokens: tuple[int, int] = (0, 0),
    reader_lease: ReaderLease | None = None,
) -> Task:
    """Price, then reserve and record in one transaction (a refused reservation records
    nothing; a failed record holds nothing), then enqueue (taking `reader_lease` with
    the job). `knowledge` is the plan of a turn over knowledge bases; `knowledge_tokens`
    the (prompt, completion) tokens it may add, reserved with the rest."""
    prompt_tokens = count_message_tokens(messages)
    max_tokens = params.max_tokens or spec.max_output
    task_id = new_id()
    request = {
        "messages": [message_dict(m) for m in messages],
        "params": {k: v for k, v in vars(params).items() if v is not None},
        "prompt_tokens": prompt_tokens,
    }
    if knowledge is not None:
        request["knowledge"] = knowledge
    held_prompt = prompt_tokens + knowledge_tokens[0]
    held_output = max_tokens + knowledge_tokens[1]

    # The hold, the user's message and the task: one transaction, one trip to the
    # database (backend/models/answer_writes.py).
    new = answer_writes.NewTask(
        task_id=task_id,
        user_id=user.id,
        session_id=session.id if session else None,
        model=spec.id,
        request=request,
        hold=price(spec, held_prompt, held_output),
        reservation_id=new_id(),
        message_id=new_id() if session is not None and user_parts is not None else None,
        content=user_parts,
    )
    task = await credits.retried(lambda: answer_writes.record(new))
    if task is None:
        raise await credits.not_enough(user.id, new.hold)
    await enqueue(task, redis=redis, settings=settings, reader_lease=reader_lease)
    return task


async def enqueue(
    task: Task, *, redis: ArqRedis, settings: Settings, reader_lease: ReaderLease | None = None
) -> None:
    """Queue the generation; the job id is the task id, so a task is queued at most once.
    With `reader_lease`, its stream's lease is taken in the same round trip."""
    claim = None
    if reader_lease is not None:
        claim = job_queue.KeyClaim(
            task_lease_key(settings.redis_prefix, task.id),
            new_lease_token(),
            int(reader_lease.seconds * 1000),
        )
    try:
        await job_queue.enqueue(
            redis,
            queue_name(settings.redis_prefix, CHAT_QUEUE),
            GENERATE_ANSWER_JOB,
            task.id,
            job_id=task.id,
            claim=claim,
        )
    except Exception as error:
        await task_outcomes.fail(
            task,
            "queue_unavailable",
            "The task queue is unreachable; try again shortly",
            expected=TaskState.QUEUED,
            redis=redis,
            settings=settings,
        )
        raise ServiceUnavailable("The task queue is unreachable; try again shortly") from error
    if reader_lease is not None and claim is not None and claim.taken:
        reader_lease.token = claim.value


async def create_task(
    user: User,
    session_id: str,
    parts: list[dict[str, Any]],
    *,
    redis: ArqRedis,
    settings: Settings,
    reader_lease: ReaderLease | None = None,
) -> Task:
    """Ask in one of the user's sessions: `parts` are content parts (`text`, `image`);
    `reader_lease` for a turn whose answer this request streams."""
    # With its assistant, in one statement built once (backend/models/lean_reads.py).
    session = await owned_session(session_id, user.id)
    if session is None:
        raise NotFound(f"Session '{session_id}' not found")
    assistant = session.assistant
    if not can_chat_with(user, assistant):
        raise NotFound(
            f"Session '{session_id}' belongs to chat '{assistant.id}', which is no longer "
            "available to you: it is not public any more"
        )
    llm = assistant.llm or {}
    spec = get_model(llm["model_name"]) if llm.get("model_name") else default_model()
    if has_images(parts):
        require_vision(spec)
    parts = await authorize_parts(user, parts)
    knowledge, knowledge_tokens = None, (0, 0)
    if assistant.dataset_ids:
        messages, knowledge, knowledge_tokens = await knowledge_turns.prepare(
            session, assistant, spec, parts
        )
    else:
        messages = await build_context(session, assistant, spec, new_parts=parts)
    return await start(
        user,
        spec=spec,
        messages=messages,
        params=sampling(llm, spec),
        session=session,
        user_parts=parts,
        redis=redis,
        settings=settings,
        knowledge=knowledge,
        knowledge_tokens=knowledge_tokens,
        reader_lease=reader_lease,
    )


async def create_stateless_task(
    user: User,
    model_id: str | None,
    messages: list[ChatMessage],
    *,
    params: SamplingParams | None = None,
    redis: ArqRedis,
    settings: Settings,
    knowledge: dict[str, Any] | None = None,
    knowledge_tokens: tuple[int, int] = (0, 0),
    reader_lease: ReaderLease | None = None,
) -> Task:
    """A turn with no session (SwiftChat's converse, OpenAI's chat completions): the caller
    passes the whole conversation; `knowledge` is an assistant's plan and `reader_lease`
    the lease of the request that reads it, as in `start`."""
    spec = get_model(model_id) if model_id else default_model()
    if not messages:
        raise BadRequest("messages is empty: send at least one user message")
    if any(isinstance(m.content, list) and has_images(m.content) for m in messages):
        require_vision(spec)
    # Façades build data URLs, never upload references; should one ever pass one on, it
    # must be the caller's own.
    await require_owned(
        user, [p for m in messages if isinstance(m.content, list) for p in m.content]
    )
    return await start(
        user,
        spec=spec,
        messages=messages,
        params=sampling(vars(params) if params else {}, spec),
        session=None,
        user_parts=None,
        redis=redis,
        settings=settings,
        knowledge=knowledge,
        knowledge_tokens=knowledge_tokens,
        reader_lease=reader_lease,
    )


async def get_task(user: User, task_id: str) -> Task:
    """The user's own task; another user's task is reported as missing, never forbidden."""
    task = await owned_task(task_id, user.id)
    if task is None:
        raise NotFound(f"Task '{task_id}' not found")
    return task


async def cancel_task(user: User, task_id: str, *, redis: ArqRedis, settings: Settings) -> Task:
    """Ask the worker to stop; a task still queued is cancelled here and never starts.

    The flag is a Redis key the generating worker polls, not arq's abort: aborting an
    unknown job id poisons that id.
    """
    task = await get_task(user, task_id)
    if task.state.terminal:
        raise Conflict(f"Task '{task_id}' already ended ({task.state}); there is nothing to cancel")
    await redis.set(
        task_cancel_key(settings.redis_prefix, task.id), "1", ex=settings.chat_job_timeout_seconds
    )
    if task.state is TaskState.QUEUED:
        await task_outcomes.cancel(
            task,
            get_model(task.model),
            task_outcomes.Answer(text="", prompt_tokens=0, completion_tokens=0),
            expected=TaskState.QUEUED,
            redis=redis,
            settings=settings,
        )
    await task.refresh_from_db()
    return task
