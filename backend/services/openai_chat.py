"""OpenAI's chat completions over chat tasks: a conversation the client sends whole,
answered by a chat assistant (its prompt, presets, model and settings) or by a model.

The turn is a stateless task (nothing is stored in a session, as with RAGFlow's own
OpenAI-compatible route and SwiftChat's converse): reserved, queued, generated, settled
and cancellable like any other. `model` picks what answers: a chat assistant's id, a
model name, or on the chat-scoped paths the assistant's model unless another model of
the registry is named (RAGFlow's placeholder `"model"` and unknown names keep it).
An assistant over datasets answers from them as in a session: the task carries the same
knowledge plan (backend/services/knowledge_turns.py), so the chat worker retrieves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis

from backend.errors import BadRequest, NotFound
from backend.models import Assistant, Task, User
from backend.providers.base import ChatMessage, ModelSpec, SamplingParams
from backend.providers.registry import default_model, get_model, list_models
from backend.services import knowledge_turns, tasks
from backend.services.assistants import get_visible_assistant, visible_to
from backend.services.context import fit, output_tokens, preamble
from backend.services.knowledge_turns import KNOWLEDGE_MARKER
from backend.settings import Settings
from schemas.ids import is_public_id
from schemas.openai_chat import PLACEHOLDER_MODEL, ChatCompletionRequest, OpenAIMessage

SYSTEM_ROLES = ("system", "developer")


@dataclass(frozen=True)
class Target:
    """What answers: the model, the assistant if any, and the `model` echoed back."""

    spec: ModelSpec
    assistant: Assistant | None
    model_name: str


def served_model(name: str) -> ModelSpec | None:
    return next((spec for spec in list_models() if spec.id == name), None)


def assistant_model(assistant: Assistant) -> ModelSpec:
    name = (assistant.llm or {}).get("model_name")
    return get_model(name) if name else default_model()


async def resolve(user: User, model: str, chat_id: str | None) -> Target:
    """The target of a request; 404 for a `model` that is neither a visible assistant's
    id nor a model served here (on /v1/chat/completions, where there is no chat id)."""
    if chat_id is not None:
        assistant = await get_visible_assistant(user, chat_id)
        override = served_model(model) if model != PLACEHOLDER_MODEL else None
        spec = override or assistant_model(assistant)
        return Target(spec, assistant, spec.id)
    if is_public_id(model):
        assistant = await Assistant.filter(visible_to(user), id=model).first()
        if assistant is not None:
            return Target(assistant_model(assistant), assistant, model)
    spec = served_model(model)
    if spec is None:
        names = ", ".join(spec.id for spec in list_models())
        raise NotFound(
            f"The model '{model}' does not exist: use one of {names}, or the id of one of "
            "your chat assistants"
        )
    return Target(spec, None, spec.id)


def content_of(message: OpenAIMessage) -> str | list[dict[str, Any]]:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    parts = []
    for part in message.content:
        if part.type == "text":
            parts.append({"type": "text", "text": part.text or ""})
        elif part.image_url is not None:
            parts.append({"type": "image_url", "image_url": {"url": part.image_url.url}})
        else:
            raise BadRequest("An image_url content part needs image_url.url")
    if all(part["type"] == "text" for part in parts):
        return "\n".join(part["text"] for part in parts)
    return parts


def conversation(
    target: Target,
    data: ChatCompletionRequest,
    max_output: int,
    knowledge_slot: str = "",
    reserved: int = 0,
) -> list[ChatMessage]:
    """The assistant's preamble and the client's system messages, then as many of the
    client's turns as fit the model's window (oldest dropped first, `reserved` tokens
    kept free for knowledge), then the question."""
    system = "\n\n".join(
        str(content_of(m)) for m in data.messages if m.role in SYSTEM_ROLES and m.content
    )
    head = preamble(target.assistant, knowledge_slot) if target.assistant is not None else []
    if system:
        head.append(ChatMessage(role="system", content=system))
    turns = [
        ChatMessage(role="user" if m.role == "tool" else m.role, content=content_of(m))
        for m in data.messages
        if m.role not in SYSTEM_ROLES
    ]
    if not turns or turns[-1].role != "user":
        raise BadRequest("The last message must be the user's: it is the one being answered")
    return fit(head, turns[:-1], turns[-1:], target.spec, max_output, reserved)


def sampling(target: Target, data: ChatCompletionRequest) -> SamplingParams:
    """The assistant's settings, overridden by the request's; max_tokens capped by the model."""
    llm = dict((target.assistant.llm or {}) if target.assistant is not None else {})
    for name in tasks.SAMPLING_FIELDS:
        if getattr(data, name) is not None:
            llm[name] = getattr(data, name)
    requested = data.max_completion_tokens or data.max_tokens
    if requested is not None:
        llm["max_tokens"] = requested
    return tasks.sampling(llm, target.spec)


async def start(
    user: User,
    data: ChatCompletionRequest,
    chat_id: str | None,
    *,
    redis: ArqRedis,
    settings: Settings,
    reader_lease: tasks.ReaderLease | None = None,
) -> tuple[Task, Target]:
    target = await resolve(user, data.model, chat_id)
    params = sampling(target, data)
    max_output = params.max_tokens or output_tokens({}, target.spec)
    assistant = target.assistant
    plan: dict[str, Any] | None = None
    extra = (0, 0)
    if assistant is None or not assistant.dataset_ids:
        messages = conversation(target, data, max_output)
    else:
        # Over knowledge bases: the same plan as a session turn, so the chat worker
        # retrieves from the assistant's datasets and the reference reaches the final chunk.
        wanted, reserved = await knowledge_turns.history_room(assistant, target.spec, max_output)
        fitted = conversation(target, data, max_output, KNOWLEDGE_MARKER, reserved)
        messages, plan, extra = knowledge_turns.planned(
            fitted, assistant, target.spec, max_output, wanted
        )
    task = await tasks.create_stateless_task(
        user,
        target.spec.id,
        messages,
        params=params,
        redis=redis,
        settings=settings,
        knowledge=plan,
        knowledge_tokens=extra,
        reader_lease=reader_lease,
    )
    return task, target
