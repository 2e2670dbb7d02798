"""Assistants at /api/v1/chats: RAGFlow's fields and defaults, visibility, permissions."""

from __future__ import annotations

import pytest
from quart.testing import QuartClient

from tests.support.chats import Account, create_chat, model_id


async def test_create_fills_ragflow_defaults(client: QuartClient, owner: Account) -> None:
    response = await client.post("/api/v1/chats", json={"name": "  helper "}, headers=owner.headers)
    assert response.status_code == 201
    body = await response.get_json()
    assert body["code"] == 0
    chat = body["data"]
    assert chat["name"] == "helper"
    assert chat["owner_id"] == owner.id
    assert chat["llm"] == {
        "model_name": None,
        "temperature": 0.1,
        "top_p": 0.3,
        "presence_penalty": 0.4,
        "frequency_penalty": 0.7,
        "max_tokens": 512,
    }
    prompt = chat["prompt"]
    assert prompt["similarity_threshold"] == 0.2
    assert prompt["keywords_similarity_weight"] == 0.7
    assert prompt["top_n"] == 6
    assert prompt["show_quote"] is True
    assert prompt["rerank_model"] == ""
    assert prompt["variables"] == [{"key": "knowledge", "optional": True}]
    assert prompt["opener"]
    assert chat["dataset_ids"] == []
    assert chat["public"] is False
    assert chat["create_time"] > 0


async def test_create_with_model_presets_and_partial_llm(
    client: QuartClient, owner: Account
) -> None:
    chat = await create_chat(
        client,
        owner,
        description="d",
        llm={"model_name": model_id(), "temperature": 0.9},
        prompt={"prompt": "Be brief.", "opener": ""},
        preset_messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Bonjour"},
        ],
    )
    assert chat["llm"]["model_name"] == model_id()
    assert chat["llm"]["temperature"] == 0.9
    assert chat["llm"]["top_p"] == 0.3
    assert chat["prompt"]["prompt"] == "Be brief."
    assert [m["role"] for m in chat["preset_messages"]] == ["system", "user", "assistant"]


async def test_create_requires_auth(client: QuartClient) -> None:
    response = await client.post("/api/v1/chats", json={"name": "x"})
    assert response.status_code == 401
    assert (await response.get_json())["code"] == 401
    bad = await client.post(
        "/api/v1/chats", json={"name": "x"}, headers={"Authorization": "Bearer nope"}
    )
    assert bad.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x", "llm": {"temperature": 5}},
        {"name": "x", "llm": {"max_tokens": 0}},
        {"name": "x", "prompt": {"top_n": 0}},
        {"name": "x", "preset_messages": [{"role": "tool", "content": "x"}]},
        {"name": "x", "preset_messages": [{"role": "user", "content": ""}]},
        {"name": "x", "dataset_ids": "abc"},
        # Ids of another shape cannot name a dataset: 422 before SQL (was a 500 for long ones).
        {"name": "x", "dataset_ids": ["d1"]},
        {"name": "x", "dataset_ids": ["\u092a\u0928\u094d\u0939 " * 20]},
    ],
)
async def test_create_rejects_malformed_input(
    client: QuartClient, owner: Account, body: dict
) -> None:
    response = await client.post("/api/v1/chats", json=body, headers=owner.headers)
    assert response.status_code == 422
    payload = await response.get_json()
    assert payload["code"] == 422
    assert payload["message"].startswith("Invalid request")


async def test_create_rejects_datasets_unknown_model_and_duplicates(
    client: QuartClient, owner: Account
) -> None:
    unknown_id = "d1" * 16
    datasets = await client.post(
        "/api/v1/chats", json={"name": "kb", "dataset_ids": [unknown_id]}, headers=owner.headers
    )
    assert datasets.status_code == 404
    assert f"Dataset '{unknown_id}' not found" in (await datasets.get_json())["message"]

    unknown = await client.post(
        "/api/v1/chats",
        json={"name": "m", "llm": {"model_name": "no-such-model"}},
        headers=owner.headers,
    )
    assert unknown.status_code == 400
    message = (await unknown.get_json())["message"]
    assert "no-such-model" in message
    assert model_id() in message

    chat = await create_chat(client, owner)
    duplicate = await client.post(
        "/api/v1/chats", json={"name": chat["name"]}, headers=owner.headers
    )
    assert duplicate.status_code == 409


async def test_only_admins_publish(client: QuartClient, owner: Account, root: Account) -> None:
    refused = await client.post(
        "/api/v1/chats", json={"name": "pub", "public": True}, headers=owner.headers
    )
    assert refused.status_code == 403
    chat = await create_chat(client, root, public=True)
    assert chat["public"] is True
    mine = await create_chat(client, owner)
    publish = await client.put(
        f"/api/v1/chats/{mine['id']}", json={"public": True}, headers=owner.headers
    )
    assert publish.status_code == 403


async def test_get_own_public_and_hidden(
    client: QuartClient, owner: Account, stranger: Account, root: Account
) -> None:
    mine = await create_chat(client, owner)
    public = await create_chat(client, root, public=True)

    own = await client.get(f"/api/v1/chats/{mine['id']}", headers=owner.headers)
    assert own.status_code == 200
    assert (await own.get_json())["data"]["id"] == mine["id"]

    shared = await client.get(f"/api/v1/chats/{public['id']}", headers=stranger.headers)
    assert shared.status_code == 200

    hidden = await client.get(f"/api/v1/chats/{mine['id']}", headers=stranger.headers)
    assert hidden.status_code == 404
    missing = await client.get("/api/v1/chats/0123456789abcdef", headers=owner.headers)
    assert missing.status_code == 404
    assert (await client.get(f"/api/v1/chats/{mine['id']}")).status_code == 401


async def test_list_filters_orders_and_pages(
    client: QuartClient, owner: Account, stranger: Account, root: Account
) -> None:
    created = [await create_chat(client, owner) for _ in range(3)]
    others = await create_chat(client, stranger)
    public = await create_chat(client, root, public=True)

    response = await client.get("/api/v1/chats?page_size=1000", headers=owner.headers)
    assert response.status_code == 200
    ids = [chat["id"] for chat in (await response.get_json())["data"]]
    assert {chat["id"] for chat in created} <= set(ids)
    assert public["id"] in ids
    assert others["id"] not in ids

    newest_first = await client.get(
        "/api/v1/chats?orderby=create_time&desc=true&page=1&page_size=2", headers=owner.headers
    )
    page = (await newest_first.get_json())["data"]
    assert len(page) == 2
    assert page[0]["create_time"] >= page[1]["create_time"]

    oldest_first = await client.get(
        "/api/v1/chats?orderby=create_time&desc=false&page_size=1000", headers=owner.headers
    )
    times = [chat["create_time"] for chat in (await oldest_first.get_json())["data"]]
    assert times == sorted(times)

    by_name = await client.get(f"/api/v1/chats?name={created[1]['name']}", headers=owner.headers)
    assert [c["id"] for c in (await by_name.get_json())["data"]] == [created[1]["id"]]
    by_id = await client.get(f"/api/v1/chats?id={created[2]['id']}", headers=owner.headers)
    assert [c["id"] for c in (await by_id.get_json())["data"]] == [created[2]["id"]]

    nothing = await client.get(f"/api/v1/chats?id={others['id']}", headers=owner.headers)
    assert nothing.status_code == 404


async def test_list_rejects_bad_query_and_requires_auth(
    client: QuartClient, owner: Account
) -> None:
    for query in ("page=0", "page_size=abc", "orderby=name", "desc=maybe"):
        response = await client.get(f"/api/v1/chats?{query}", headers=owner.headers)
        assert response.status_code == 422, query
    assert (await client.get("/api/v1/chats")).status_code == 401


async def test_update_merges_and_validates(client: QuartClient, owner: Account) -> None:
    chat = await create_chat(client, owner, llm={"temperature": 0.5})
    response = await client.put(
        f"/api/v1/chats/{chat['id']}",
        json={"name": "renamed", "llm": {"top_p": 0.9}, "prompt": {"opener": "Hello!"}},
        headers=owner.headers,
    )
    assert response.status_code == 200
    updated = (await response.get_json())["data"]
    assert updated["name"] == "renamed"
    assert updated["llm"]["temperature"] == 0.5
    assert updated["llm"]["top_p"] == 0.9
    assert updated["prompt"]["opener"] == "Hello!"
    assert updated["prompt"]["top_n"] == 6

    bad_model = await client.put(
        f"/api/v1/chats/{chat['id']}", json={"llm": {"model_name": "nope"}}, headers=owner.headers
    )
    assert bad_model.status_code == 400
    malformed = await client.put(
        f"/api/v1/chats/{chat['id']}", json={"llm": {"top_p": 3}}, headers=owner.headers
    )
    assert malformed.status_code == 422
    datasets = await client.put(
        f"/api/v1/chats/{chat['id']}", json={"dataset_ids": ["0" * 32]}, headers=owner.headers
    )
    assert datasets.status_code == 404
    stored = await client.get(f"/api/v1/chats/{chat['id']}", headers=owner.headers)
    assert (await stored.get_json())["data"]["llm"]["model_name"] is None


async def test_update_with_null_for_a_required_setting_is_a_422(
    client: QuartClient, owner: Account
) -> None:
    """The update schema allows null in every field; the stored block does not (found by
    schemathesis: it was a 500)."""
    chat = await create_chat(client, owner)
    response = await client.put(
        f"/api/v1/chats/{chat['id']}",
        json={"prompt": {"tts": None, "similarity_threshold": None}},
        headers=owner.headers,
    )
    assert response.status_code == 422, await response.get_data(as_text=True)
    message = (await response.get_json())["message"]
    assert "tts" in message and "similarity_threshold" in message
    stored = await client.get(f"/api/v1/chats/{chat['id']}", headers=owner.headers)
    assert (await stored.get_json())["data"]["prompt"]["similarity_threshold"] == 0.2


async def test_update_permissions(
    client: QuartClient, owner: Account, stranger: Account, root: Account
) -> None:
    mine = await create_chat(client, owner)
    public = await create_chat(client, root, public=True)
    assert (await client.put(f"/api/v1/chats/{mine['id']}", json={"name": "x"})).status_code == 401
    hidden = await client.put(
        f"/api/v1/chats/{mine['id']}", json={"name": "x"}, headers=stranger.headers
    )
    assert hidden.status_code == 404
    forbidden = await client.put(
        f"/api/v1/chats/{public['id']}", json={"name": "x"}, headers=stranger.headers
    )
    assert forbidden.status_code == 403
    by_admin = await client.put(
        f"/api/v1/chats/{mine['id']}", json={"description": "checked"}, headers=root.headers
    )
    assert by_admin.status_code == 200
    assert (await by_admin.get_json())["data"]["description"] == "checked"
    missing = await client.put(
        "/api/v1/chats/0123456789abcdef", json={"name": "x"}, headers=owner.headers
    )
    assert missing.status_code == 404


async def test_delete_by_ids_all_or_nothing(
    client: QuartClient, owner: Account, stranger: Account, root: Account
) -> None:
    first = await create_chat(client, owner)
    second = await create_chat(client, owner)
    theirs = await create_chat(client, stranger)
    public = await create_chat(client, root, public=True)

    assert (await client.delete("/api/v1/chats", json={"ids": [first["id"]]})).status_code == 401
    mixed = await client.delete(
        "/api/v1/chats", json={"ids": [first["id"], theirs["id"]]}, headers=owner.headers
    )
    assert mixed.status_code == 404
    assert (
        await client.get(f"/api/v1/chats/{first['id']}", headers=owner.headers)
    ).status_code == 200
    forbidden = await client.delete(
        "/api/v1/chats", json={"ids": [public["id"]]}, headers=owner.headers
    )
    assert forbidden.status_code == 403
    for body in (
        {},
        {"ids": []},
        {"ids": "x"},
        {"ids": None},
        {"ids": [first["id"], first["id"]]},
        # There is no "delete everything" for chats: a field for it is refused, not ignored.
        {"ids": [first["id"]], "delete_all": True},
    ):
        malformed = await client.delete("/api/v1/chats", json=body, headers=owner.headers)
        assert malformed.status_code == 422, body

    deleted = await client.delete(
        "/api/v1/chats", json={"ids": [first["id"], second["id"]]}, headers=owner.headers
    )
    assert deleted.status_code == 200
    assert (await deleted.get_json())["code"] == 0
    for chat in (first, second):
        gone = await client.get(f"/api/v1/chats/{chat['id']}", headers=owner.headers)
        assert gone.status_code == 404


async def test_routes_are_documented(client: QuartClient) -> None:
    paths = (await (await client.get("/openapi.json")).get_json())["paths"]
    assert {"get", "post", "delete"} <= set(paths["/api/v1/chats"])
    assert {"get", "put"} <= set(paths["/api/v1/chats/{chat_id}"])
