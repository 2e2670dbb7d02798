"""Assistants at RAGFlow's `/api/v1/chats`: create, list, read, update, delete by ids."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.documented_errors import document_errors
from backend.http.responses import ok
from backend.http.routes.datasets import http_date, milliseconds
from backend.models import Assistant
from backend.services import assistants
from backend.services.assistant_datasets import datasets_of
from schemas.chats import (
    AssistantCreate,
    AssistantDataset,
    AssistantOut,
    AssistantUpdate,
    DeleteIds,
    ListQuery,
    PromptSettings,
)
from schemas.envelope import Envelope

blueprint = Blueprint("chats", __name__, url_prefix="/api/v1/chats")


def assistant_out(assistant: Assistant, known: dict[str, AssistantDataset]) -> AssistantOut:
    prompt = PromptSettings.model_validate(assistant.prompt or {})
    attached = [known[i] for i in assistant.dataset_ids if i in known]
    return AssistantOut(
        id=assistant.id,
        name=assistant.name,
        avatar=assistant.avatar,
        description=assistant.description,
        llm=assistant.llm,
        prompt=prompt,
        top_k=prompt.top_k,
        do_refer="1" if prompt.show_quote else "0",
        dataset_ids=assistant.dataset_ids,
        datasets=attached,
        kb_names=[dataset.name for dataset in attached],
        preset_messages=assistant.preset_messages,
        public=assistant.public,
        owner_id=assistant.owner_id,
        tenant_id=str(assistant.owner_id),
        create_time=milliseconds(assistant.created_at),
        create_date=http_date(assistant.created_at),
        update_time=milliseconds(assistant.updated_at),
        update_date=http_date(assistant.updated_at),
    )


async def assistants_out(items: list[Assistant]) -> list[AssistantOut]:
    known = await datasets_of(items)
    return [assistant_out(item, known) for item in items]


async def one_out(assistant: Assistant) -> AssistantOut:
    return (await assistants_out([assistant]))[0]


@blueprint.post("")
@document_errors(403, 404, 409)
@authenticated
@validate_request(AssistantCreate)
@validate_response(Envelope[AssistantOut], 201)
async def create_chat(data: AssistantCreate):
    """Create an assistant; omitted `llm`/`prompt` fields take RAGFlow's defaults
    (`llm.model_name` null: the default model; with datasets and no `prompt.prompt`,
    RAGFlow's knowledge prompt). `dataset_ids` must be the caller's datasets (404) on one
    embedding model (400); only administrators may set `public`.
    """
    return ok(await one_out(await assistants.create_assistant(current_user(), data)), 201)


@blueprint.get("")
@document_errors(404)
@authenticated
@validate_querystring(ListQuery)
@validate_response(Envelope[list[AssistantOut]])
async def list_chats(query_args: ListQuery):
    """The caller's assistants and every public one; a filter matching nothing is 404."""
    items = await assistants.list_assistants(current_user(), query_args)
    return ok(await assistants_out(items))


@blueprint.get("/<id:chat_id>")
@authenticated
@validate_response(Envelope[AssistantOut])
async def get_chat(chat_id: str):
    """One assistant the caller owns, or a public one."""
    return ok(await one_out(await assistants.get_visible_assistant(current_user(), chat_id)))


@blueprint.put("/<id:chat_id>")
@document_errors(403, 404, 409)
@authenticated
@validate_request(AssistantUpdate)
@validate_response(Envelope[AssistantOut])
async def update_chat(chat_id: str, data: AssistantUpdate):
    """Change the fields sent; `llm` and `prompt` are merged. Owner or administrator only."""
    return ok(await one_out(await assistants.update_assistant(current_user(), chat_id, data)))


@blueprint.delete("")
@document_errors(404)
@authenticated
@validate_request(DeleteIds)
@validate_response(Envelope[None])
async def delete_chats(data: DeleteIds):
    """Delete assistants by `ids` with their sessions; all or nothing."""
    await assistants.delete_assistants(current_user(), data.ids)
    return ok(None)
