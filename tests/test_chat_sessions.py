"""Sessions at /api/v1/chats/{chat_id}/sessions: opener, privacy, filters, delete by ids."""

from __future__ import annotations

from quart.testing import QuartClient

from tests.support.chats import Account, create_chat, create_session


def sessions_url(chat_id: str) -> str:
    return f"/api/v1/chats/{chat_id}/sessions"


async def test_new_session_opens_with_the_opener(client: QuartClient, owner: Account) -> None:
    chat = await create_chat(client, owner, prompt={"opener": "Welcome aboard"})
    response = await client.post(
        sessions_url(chat["id"]), json={"name": "first"}, headers=owner.headers
    )
    assert response.status_code == 201
    session = (await response.get_json())["data"]
    assert session["name"] == "first"
    assert session["chat_id"] == chat["id"]
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("assistant", [{"type": "text", "text": "Welcome aboard"}])
    ]


async def test_no_opener_no_message_and_default_name(client: QuartClient, owner: Account) -> None:
    chat = await create_chat(client, owner, prompt={"opener": ""})
    response = await client.post(sessions_url(chat["id"]), json={}, headers=owner.headers)
    assert response.status_code == 201
    session = (await response.get_json())["data"]
    assert session["name"] == "New session"
    assert session["messages"] == []


async def test_sessions_of_public_chat_are_private_to_each_user(
    client: QuartClient, owner: Account, stranger: Account, root: Account
) -> None:
    public = await create_chat(client, root, public=True)
    mine = await create_session(client, owner, public["id"], "mine")
    theirs = await create_session(client, stranger, public["id"], "theirs")

    listed = await client.get(sessions_url(public["id"]), headers=owner.headers)
    assert listed.status_code == 200
    assert [s["id"] for s in (await listed.get_json())["data"]] == [mine["id"]]

    renamed = await client.put(
        f"{sessions_url(public['id'])}/{theirs['id']}", json={"name": "x"}, headers=owner.headers
    )
    assert renamed.status_code == 404
    deleted = await client.delete(
        sessions_url(public["id"]), json={"ids": [theirs["id"]]}, headers=owner.headers
    )
    assert deleted.status_code == 404


async def test_other_users_private_chat_is_not_found(
    client: QuartClient, owner: Account, stranger: Account
) -> None:
    chat = await create_chat(client, owner)
    for method, kwargs in (
        ("post", {"json": {"name": "x"}}),
        ("get", {}),
        ("delete", {"json": {"ids": ["0123456789abcdef0123456789abcdef"]}}),
    ):
        response = await getattr(client, method)(
            sessions_url(chat["id"]), headers=stranger.headers, **kwargs
        )
        assert response.status_code == 404, method
    missing = await client.post(
        sessions_url("0123456789abcdef"), json={"name": "x"}, headers=owner.headers
    )
    assert missing.status_code == 404


async def test_requires_auth(client: QuartClient, owner: Account) -> None:
    chat = await create_chat(client, owner)
    assert (await client.post(sessions_url(chat["id"]), json={})).status_code == 401
    assert (await client.get(sessions_url(chat["id"]))).status_code == 401
    unknown = "0123456789abcdef0123456789abcdef"
    assert (
        await client.delete(sessions_url(chat["id"]), json={"ids": [unknown]})
    ).status_code == 401
    assert (
        await client.put(f"{sessions_url(chat['id'])}/{unknown}", json={"name": "y"})
    ).status_code == 401


async def test_list_filters_orders_and_pages(client: QuartClient, owner: Account) -> None:
    chat = await create_chat(client, owner)
    created = [await create_session(client, owner, chat["id"], f"s{i}") for i in range(3)]

    newest = await client.get(f"{sessions_url(chat['id'])}?desc=true", headers=owner.headers)
    assert [s["id"] for s in (await newest.get_json())["data"]] == [
        s["id"] for s in reversed(created)
    ]
    oldest = await client.get(
        f"{sessions_url(chat['id'])}?desc=false&page=2&page_size=1", headers=owner.headers
    )
    assert [s["id"] for s in (await oldest.get_json())["data"]] == [created[1]["id"]]
    by_name = await client.get(f"{sessions_url(chat['id'])}?name=s2", headers=owner.headers)
    assert [s["id"] for s in (await by_name.get_json())["data"]] == [created[2]["id"]]
    by_id = await client.get(
        f"{sessions_url(chat['id'])}?id={created[0]['id']}", headers=owner.headers
    )
    assert [s["id"] for s in (await by_id.get_json())["data"]] == [created[0]["id"]]
    nothing = await client.get(f"{sessions_url(chat['id'])}?name=zzz", headers=owner.headers)
    assert nothing.status_code == 404
    bad = await client.get(f"{sessions_url(chat['id'])}?page_size=0", headers=owner.headers)
    assert bad.status_code == 422


async def test_rename_and_malformed(client: QuartClient, owner: Account) -> None:
    chat = await create_chat(client, owner)
    session = await create_session(client, owner, chat["id"])
    url = f"{sessions_url(chat['id'])}/{session['id']}"
    renamed = await client.put(url, json={"name": "Trip plans"}, headers=owner.headers)
    assert renamed.status_code == 200
    assert (await renamed.get_json())["data"]["name"] == "Trip plans"
    for body in ({}, {"name": ""}, {"name": "x" * 300}):
        response = await client.put(url, json=body, headers=owner.headers)
        assert response.status_code == 422, body
    missing = await client.put(
        f"{sessions_url(chat['id'])}/0123456789abcdef", json={"name": "x"}, headers=owner.headers
    )
    assert missing.status_code == 404


async def test_session_of_another_chat_is_not_found(client: QuartClient, owner: Account) -> None:
    first = await create_chat(client, owner)
    second = await create_chat(client, owner)
    session = await create_session(client, owner, first["id"])
    response = await client.put(
        f"{sessions_url(second['id'])}/{session['id']}", json={"name": "x"}, headers=owner.headers
    )
    assert response.status_code == 404


async def test_delete_by_ids_all_or_nothing(client: QuartClient, owner: Account) -> None:
    chat = await create_chat(client, owner)
    first = await create_session(client, owner, chat["id"])
    second = await create_session(client, owner, chat["id"])
    partial = await client.delete(
        sessions_url(chat["id"]),
        json={"ids": [first["id"], "0123456789abcdef0123456789abcdef"]},
        headers=owner.headers,
    )
    assert partial.status_code == 404
    assert "0123456789abcdef0123456789abcdef" in (await partial.get_json())["message"]
    for nothing in ({}, {"ids": []}, {"ids": None}, {"ids": [first["id"], first["id"]]}):
        refused = await client.delete(sessions_url(chat["id"]), json=nothing, headers=owner.headers)
        assert refused.status_code == 422, nothing
    deleted = await client.delete(
        sessions_url(chat["id"]), json={"ids": [first["id"]]}, headers=owner.headers
    )
    assert deleted.status_code == 200
    remaining = await client.get(sessions_url(chat["id"]), headers=owner.headers)
    assert [s["id"] for s in (await remaining.get_json())["data"]] == [second["id"]]


async def test_deleting_the_chat_deletes_its_sessions(client: QuartClient, owner: Account) -> None:
    chat = await create_chat(client, owner)
    await create_session(client, owner, chat["id"])
    await client.delete("/api/v1/chats", json={"ids": [chat["id"]]}, headers=owner.headers)
    response = await client.get(sessions_url(chat["id"]), headers=owner.headers)
    assert response.status_code == 404


async def test_routes_are_documented(client: QuartClient) -> None:
    paths = (await (await client.get("/openapi.json")).get_json())["paths"]
    assert {"get", "post", "delete"} <= set(paths["/api/v1/chats/{chat_id}/sessions"])
    assert "put" in paths["/api/v1/chats/{chat_id}/sessions/{session_id}"]
