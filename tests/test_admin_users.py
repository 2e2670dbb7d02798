"""Administering accounts: list, get, update, disable; level 2 only."""

from __future__ import annotations

from quart.testing import QuartClient

from tests.support.accounts import Account, register

USERS = "/api/v1/users"


async def test_admin_lists_users_with_paging_and_username_filter(
    client: QuartClient, admin: Account
):
    tag = "flt" + (await register(client)).username[1:7]
    made = [await register(client, f"{tag}{n}") for n in range(3)]
    response = await client.get(
        USERS, query_string={"username": tag.upper(), "page_size": 2}, headers=admin.headers
    )
    assert response.status_code == 200
    page = (await response.get_json())["data"]
    assert page["total"] == 3
    assert [u["id"] for u in page["items"]] == [made[0].id, made[1].id]
    second = await client.get(
        USERS, query_string={"username": tag, "page_size": 2, "page": 2}, headers=admin.headers
    )
    assert [u["id"] for u in (await second.get_json())["data"]["items"]] == [made[2].id]
    everyone = await client.get(USERS, headers=admin.headers)
    assert (await everyone.get_json())["data"]["total"] >= 4


async def test_admin_gets_one_user(client: QuartClient, admin: Account, user: Account):
    response = await client.get(f"{USERS}/{user.id}", headers=admin.headers)
    assert response.status_code == 200
    assert (await response.get_json())["data"]["username"] == user.username
    missing = await client.get(f"{USERS}/999999999", headers=admin.headers)
    assert missing.status_code == 404


async def test_admin_updates_nickname_and_level(client: QuartClient, admin: Account, user: Account):
    response = await client.patch(
        f"{USERS}/{user.id}", json={"nickname": "Promoted", "level": 2}, headers=admin.headers
    )
    assert response.status_code == 200
    data = (await response.get_json())["data"]
    assert (data["nickname"], data["level"]) == ("Promoted", 2)
    as_admin = await client.get(USERS, headers=user.headers)
    assert as_admin.status_code == 200


async def test_admin_update_validates_input(client: QuartClient, admin: Account, user: Account):
    for payload, field in [
        ({"level": 1}, "level"),
        ({"nickname": ""}, "nickname"),
        ({"disabled": "maybe"}, "disabled"),
    ]:
        response = await client.patch(f"{USERS}/{user.id}", json=payload, headers=admin.headers)
        assert response.status_code == 422, payload
        assert field in (await response.get_json())["message"]
    missing = await client.patch(f"{USERS}/999999999", json={"level": 0}, headers=admin.headers)
    assert missing.status_code == 404
    bad_query = await client.get(USERS, query_string={"page": 0}, headers=admin.headers)
    assert bad_query.status_code == 422


async def test_admin_cannot_lock_themself_out(client: QuartClient, admin: Account):
    for payload in ({"disabled": True}, {"level": 0}):
        response = await client.patch(f"{USERS}/{admin.id}", json=payload, headers=admin.headers)
        assert response.status_code == 400
    response = await client.post(f"{USERS}/{admin.id}/disable", headers=admin.headers)
    assert response.status_code == 400


async def test_disabled_user_is_locked_out_at_once(
    client: QuartClient, admin: Account, user: Account
):
    key = await client.post(f"{USERS}/me/api-keys", json={"name": "k"}, headers=user.headers)
    api_key = (await key.get_json())["data"]["key"]
    response = await client.post(f"{USERS}/{user.id}/disable", headers=admin.headers)
    assert response.status_code == 200
    assert (await response.get_json())["data"]["disabled"] is True
    for headers in (user.headers, {"Authorization": f"Bearer {api_key}"}):
        me = await client.get(f"{USERS}/me", headers=headers)
        assert me.status_code == 401
        assert "disabled" in (await me.get_json())["message"]
    enabled = await client.patch(
        f"{USERS}/{user.id}", json={"disabled": False}, headers=admin.headers
    )
    assert enabled.status_code == 200
    assert (await client.get(f"{USERS}/me", headers=user.headers)).status_code == 200
    missing = await client.post(f"{USERS}/999999999/disable", headers=admin.headers)
    assert missing.status_code == 404


async def test_non_admins_get_403(client: QuartClient, user: Account, other_user: Account):
    calls = [
        client.get(USERS, headers=user.headers),
        client.get(f"{USERS}/{other_user.id}", headers=user.headers),
        client.patch(f"{USERS}/{other_user.id}", json={"level": 2}, headers=user.headers),
        client.patch(f"{USERS}/{user.id}", json={"level": 2}, headers=user.headers),
        client.post(f"{USERS}/{other_user.id}/disable", headers=user.headers),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 403
        assert "level 2" in (await response.get_json())["message"]
    me = await client.get(f"{USERS}/me", headers=user.headers)
    assert (await me.get_json())["data"]["level"] == 0


async def test_admin_routes_need_authentication(client: QuartClient, user: Account):
    assert (await client.get(USERS)).status_code == 401
    assert (await client.get(f"{USERS}/{user.id}")).status_code == 401
    assert (await client.patch(f"{USERS}/{user.id}", json={"level": 2})).status_code == 401
    assert (await client.post(f"{USERS}/{user.id}/disable")).status_code == 401
