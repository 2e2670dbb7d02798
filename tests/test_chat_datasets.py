"""Assistants over knowledge bases at /api/v1/chats: attaching datasets (the caller's
own, one embedding model), RAGFlow's prompt fields and defaults, every response field."""

from __future__ import annotations

from quart.testing import QuartClient

from backend.models import Dataset
from schemas.chats import DEFAULT_KNOWLEDGE_PROMPT, DEFAULT_PROMPT
from tests.support.chats import Account, create_chat
from tests.support.knowledge import create_dataset

RESPONSE_FIELDS = {
    "id", "name", "avatar", "description", "language", "llm", "prompt", "prompt_type",
    "top_k", "do_refer", "dataset_ids", "datasets", "kb_names", "tenant_id", "status",
    "create_time", "create_date", "update_time", "update_date",
}  # fmt: skip
PROMPT_FIELDS = {
    "prompt", "opener", "empty_response", "show_quote", "variables", "similarity_threshold",
    "keywords_similarity_weight", "top_n", "top_k", "rerank_model", "refine_multiturn", "tts",
}  # fmt: skip


async def test_an_assistant_over_own_datasets_has_ragflow_fields(
    client: QuartClient, owner: Account
) -> None:
    first = await create_dataset(client, owner)
    second = await create_dataset(client, owner)
    chat = await create_chat(client, owner, dataset_ids=[first["id"], second["id"], first["id"]])
    assert chat["dataset_ids"] == [first["id"], second["id"]]
    assert [d["id"] for d in chat["datasets"]] == [first["id"], second["id"]]
    assert chat["kb_names"] == [first["name"], second["name"]]
    assert chat.keys() >= RESPONSE_FIELDS
    assert chat["prompt"].keys() >= PROMPT_FIELDS
    prompt = chat["prompt"]
    # RAGFlow's defaults; with datasets and no prompt, its knowledge prompt.
    assert prompt["prompt"] == DEFAULT_KNOWLEDGE_PROMPT and "{knowledge}" in prompt["prompt"]
    assert (prompt["similarity_threshold"], prompt["keywords_similarity_weight"]) == (0.2, 0.7)
    assert (prompt["top_n"], prompt["top_k"], chat["top_k"]) == (6, 1024, 1024)
    assert prompt["variables"] == [{"key": "knowledge", "optional": True}]
    assert prompt["show_quote"] is True and chat["do_refer"] == "1"
    assert prompt["refine_multiturn"] is True
    assert prompt["empty_response"].startswith("Sorry! No relevant content")
    assert chat["llm"]["model_name"] is None
    assert chat["tenant_id"] == str(owner.id) and chat["status"] == "1"
    assert chat["create_date"].endswith("GMT")

    listed = await client.get(
        "/api/v1/chats", query_string={"id": chat["id"]}, headers=owner.headers
    )
    assert (await listed.get_json())["data"][0] == chat
    read = await client.get(f"/api/v1/chats/{chat['id']}", headers=owner.headers)
    assert (await read.get_json())["data"] == chat


async def test_a_plain_assistant_keeps_the_plain_prompt(
    client: QuartClient, owner: Account
) -> None:
    chat = await create_chat(client, owner)
    assert chat["prompt"]["prompt"] == DEFAULT_PROMPT
    assert chat["datasets"] == [] and chat["kb_names"] == []


async def test_another_users_dataset_cannot_be_attached(
    client: QuartClient, owner: Account, stranger: Account
) -> None:
    theirs = await create_dataset(client, stranger)
    mine = await create_dataset(client, owner)
    created = await client.post(
        "/api/v1/chats",
        json={"name": "steal", "dataset_ids": [mine["id"], theirs["id"]]},
        headers=owner.headers,
    )
    assert created.status_code == 404
    body = await created.get_json()
    assert body["code"] == 404 and theirs["id"] in body["message"]

    chat = await create_chat(client, owner, dataset_ids=[mine["id"]])
    updated = await client.put(
        f"/api/v1/chats/{chat['id']}", json={"dataset_ids": [theirs["id"]]}, headers=owner.headers
    )
    assert updated.status_code == 404
    stored = await client.get(f"/api/v1/chats/{chat['id']}", headers=owner.headers)
    assert (await stored.get_json())["data"]["dataset_ids"] == [mine["id"]]


async def test_datasets_on_different_embedding_models_are_400(
    client: QuartClient, owner: Account
) -> None:
    first = await create_dataset(client, owner)
    second = await create_dataset(client, owner)
    await Dataset.filter(id=second["id"]).update(embedding_model="other-embed@openai")
    response = await client.post(
        "/api/v1/chats",
        json={"name": "mixed", "dataset_ids": [first["id"], second["id"]]},
        headers=owner.headers,
    )
    assert response.status_code == 400
    message = (await response.get_json())["message"]
    assert "different embedding models" in message and "other-embed@openai" in message


async def test_prompt_fields_update_and_a_required_variable_must_be_used(
    client: QuartClient, owner: Account
) -> None:
    dataset = await create_dataset(client, owner)
    chat = await create_chat(client, owner)
    changes = {
        "dataset_ids": [dataset["id"]],
        "prompt": {
            "prompt": "Answer from {knowledge} only.",
            "top_n": 3,
            "top_k": 64,
            "empty_response": "",
            "show_quote": False,
            "refine_multiturn": False,
        },
    }
    updated = await client.put(f"/api/v1/chats/{chat['id']}", json=changes, headers=owner.headers)
    assert updated.status_code == 200
    data = (await updated.get_json())["data"]
    assert data["dataset_ids"] == [dataset["id"]]
    assert data["prompt"]["top_n"] == 3 and data["top_k"] == 64
    assert data["prompt"]["show_quote"] is False and data["do_refer"] == "0"
    assert data["prompt"]["keywords_similarity_weight"] == 0.7  # merged, not reset

    unused = await client.put(
        f"/api/v1/chats/{chat['id']}",
        json={
            "prompt": {
                "prompt": "No slot here.",
                "variables": [{"key": "knowledge", "optional": False}],
            }
        },
        headers=owner.headers,
    )
    assert unused.status_code == 400
    assert "Parameter 'knowledge' is not used" in (await unused.get_json())["message"]
