"""Assistants: RAGFlow's chats and AIDeer's presets, one record.

Who sees what: a user sees their own assistants and every public one (administrators
can also open any assistant by id, to moderate it). Only the owner
or an administrator edits or deletes an assistant; a public assistant another user
can see but not edit answers 403, a private one of someone else answers 404 (its
existence is not leaked). Only administrators publish.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from tortoise.expressions import Q

from backend.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from backend.models import Assistant, User
from backend.models.listing import ragflow_page
from backend.providers.registry import list_models
from backend.services.assistant_datasets import check_datasets, check_variables
from schemas.chats import (
    DEFAULT_KNOWLEDGE_PROMPT,
    AssistantCreate,
    AssistantUpdate,
    ListQuery,
    LlmSettings,
    PromptSettings,
)


def listed_for(user: User) -> Q:
    return Q(owner_id=user.id) | Q(public=True)


def visible_to(user: User) -> Q:
    """Administrators reach every assistant (to moderate it); lists stay own + public."""
    return Q() if user.is_admin else listed_for(user)


def can_chat_with(user: User, assistant: Assistant) -> bool:
    """`visible_to`, for an assistant already loaded (e.g. through a session)."""
    return user.is_admin or assistant.owner_id == user.id or assistant.public


def check_model(model_name: str | None) -> None:
    """Reject a model the registry does not serve, naming the ones it does."""
    if model_name is None:
        return
    available = [spec.id for spec in list_models()]
    if model_name not in available:
        raise BadRequest(
            f"Unknown llm.model_name '{model_name}': available models are " + ", ".join(available)
        )


def check_publish(user: User, public: bool) -> None:
    if public and not user.is_admin:
        raise Forbidden("Only administrators can make an assistant public: set public to false")


async def check_unique_name(user: User, name: str, exclude_id: str | None = None) -> None:
    query = Assistant.filter(owner_id=user.id, name=name)
    if exclude_id is not None:
        query = query.exclude(id=exclude_id)
    if await query.exists():
        raise Conflict(f"Duplicated chat name '{name}': choose another name")


async def create_assistant(user: User, data: AssistantCreate) -> Assistant:
    check_model(data.llm.model_name)
    dataset_ids = await check_datasets(user.id, data.dataset_ids)
    prompt = data.prompt
    if dataset_ids and "prompt" not in prompt.model_fields_set:
        # RAGFlow's default for an assistant over datasets: answer from {knowledge}.
        prompt = prompt.model_copy(update={"prompt": DEFAULT_KNOWLEDGE_PROMPT})
    check_variables(prompt.prompt, prompt.variables)
    check_publish(user, data.public)
    await check_unique_name(user, data.name)
    return await Assistant.create(
        owner_id=user.id,
        name=data.name,
        avatar=data.avatar,
        description=data.description,
        llm=data.llm.model_dump(mode="json"),
        prompt=prompt.model_dump(mode="json"),
        preset_messages=[m.model_dump() for m in data.preset_messages],
        dataset_ids=dataset_ids,
        public=data.public,
    )


async def get_visible_assistant(user: User, assistant_id: str) -> Assistant:
    """An assistant the user may chat with: their own or a public one."""
    assistant = await Assistant.filter(visible_to(user), id=assistant_id).first()
    if assistant is None:
        raise NotFound(f"Chat '{assistant_id}' not found")
    return assistant


async def get_editable_assistant(user: User, assistant_id: str) -> Assistant:
    assistant = await get_visible_assistant(user, assistant_id)
    if assistant.owner_id != user.id and not user.is_admin:
        raise Forbidden(
            f"Chat '{assistant_id}' is a public assistant: only its owner or an "
            "administrator can change it"
        )
    return assistant


async def list_assistants(user: User, query: ListQuery) -> list[Assistant]:
    return await ragflow_page(Assistant.filter(listed_for(user)), query, "chat")


def merged(current: dict[str, Any], changes: Any, model: type) -> dict[str, Any]:
    """Apply the fields sent onto the stored block, validated as a whole: a field the
    update may name but the block cannot hold (e.g. `"tts": null`) is a 422, not a 500."""
    values = {**current, **changes.model_dump(exclude_unset=True, mode="json")}
    try:
        return model.model_validate(values).model_dump(mode="json")
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise Unprocessable(f"Invalid {model.__name__}: {problems}") from error


async def update_assistant(user: User, assistant_id: str, data: AssistantUpdate) -> Assistant:
    assistant = await get_editable_assistant(user, assistant_id)
    if data.name is not None and data.name != assistant.name:
        await check_unique_name(user, data.name, exclude_id=assistant.id)
        assistant.name = data.name
    if data.llm is not None:
        assistant.llm = merged(assistant.llm, data.llm, LlmSettings)
        check_model(assistant.llm.get("model_name"))
    if data.prompt is not None:
        assistant.prompt = merged(assistant.prompt, data.prompt, PromptSettings)
        check_variables(assistant.prompt["prompt"], assistant.prompt["variables"])
    if data.dataset_ids is not None:
        # The owner's datasets, also when an administrator edits the assistant.
        assistant.dataset_ids = await check_datasets(assistant.owner_id, data.dataset_ids)
    if data.preset_messages is not None:
        assistant.preset_messages = [m.model_dump() for m in data.preset_messages]
    if data.public is not None:
        if data.public != assistant.public:
            check_publish(user, True)
        assistant.public = data.public
    for field in ("avatar", "description"):
        value = getattr(data, field)
        if value is not None:
            setattr(assistant, field, value)
    await assistant.save()
    return assistant


async def delete_assistants(user: User, ids: list[str]) -> None:
    """All or nothing: every id must be an assistant the user may delete."""
    for assistant_id in dict.fromkeys(ids):
        await get_editable_assistant(user, assistant_id)
    await Assistant.filter(id__in=ids).delete()
