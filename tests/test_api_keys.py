"""API keys: created once-visible, listed without secrets, revoked, usable as bearer."""

from __future__ import annotations

from quart.testing import QuartClient

from backend.models import ApiKey
from backend.services.tokens import sha256
from tests.support.accounts import Account

KEYS = "/api/v1/users/me/api-keys"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create_key(client: QuartClient, account: Account, name: str = "script") -> dict:
    response = await client.post(KEYS, json={"name": name}, headers=account.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["data"]


async def test_create_shows_the_key_once_and_stores_only_a_hash(client: QuartClient, user: Account):
    created = await create_key(client, user, "laptop")
    assert created["key"].startswith("sk-")
    assert created["key"].startswith(created["prefix"])
    assert created["name"] == "laptop"
    stored = await ApiKey.get(id=created["id"])
    assert stored.key_hash == sha256(created["key"])
    assert created["key"] not in str(stored.__dict__)

    listed = (await (await client.get(KEYS, headers=user.headers)).get_json())["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]
    assert listed[0]["prefix"] == created["prefix"]
    assert listed[0]["last_used_at"] is None


async def test_api_key_works_as_bearer_and_records_last_use(client: QuartClient, user: Account):
    created = await create_key(client, user)
    me = await client.get("/api/v1/users/me", headers=bearer(created["key"]))
    assert me.status_code == 200
    assert (await me.get_json())["data"]["id"] == user.id
    credits = await client.get("/api/v1/users/me/credits", headers=bearer(created["key"]))
    assert credits.status_code == 200
    listed = (await (await client.get(KEYS, headers=bearer(created["key"]))).get_json())["data"]
    assert listed[0]["last_used_at"] is not None


async def test_revoked_key_stops_working(client: QuartClient, user: Account):
    created = await create_key(client, user)
    response = await client.delete(f"{KEYS}/{created['id']}", headers=user.headers)
    assert response.status_code == 200
    assert (await response.get_json())["data"] == {"id": created["id"], "revoked": True}
    me = await client.get("/api/v1/users/me", headers=bearer(created["key"]))
    assert me.status_code == 401
    listed = (await (await client.get(KEYS, headers=user.headers)).get_json())["data"]
    assert created["id"] not in [k["id"] for k in listed]
    again = await client.delete(f"{KEYS}/{created['id']}", headers=user.headers)
    assert again.status_code == 404


async def test_another_users_key_is_404_and_untouched(
    client: QuartClient, user: Account, other_user: Account
):
    created = await create_key(client, user)
    response = await client.delete(f"{KEYS}/{created['id']}", headers=other_user.headers)
    assert response.status_code == 404
    assert (await response.get_json())["code"] == 404
    listed = (await (await client.get(KEYS, headers=other_user.headers)).get_json())["data"]
    assert listed == []
    still = await client.get("/api/v1/users/me", headers=bearer(created["key"]))
    assert still.status_code == 200


async def test_unknown_key_id_is_404(client: QuartClient, user: Account):
    response = await client.delete(f"{KEYS}/doesnotexist", headers=user.headers)
    assert response.status_code == 404


async def test_keys_need_authentication(client: QuartClient):
    assert (await client.get(KEYS)).status_code == 401
    assert (await client.post(KEYS, json={"name": "x"})).status_code == 401
    assert (await client.delete(f"{KEYS}/{'0' * 32}")).status_code == 401
    fake = await client.get("/api/v1/users/me", headers=bearer("sk-not-a-real-key"))
    assert fake.status_code == 401
    assert "API key" in (await fake.get_json())["message"]


async def test_create_validates_the_name(client: QuartClient, user: Account):
    for payload in ({}, {"name": ""}, {"name": "x" * 129}, {"name": 3}):
        response = await client.post(KEYS, json=payload, headers=user.headers)
        assert response.status_code == 422, payload
        assert "name" in (await response.get_json())["message"]
