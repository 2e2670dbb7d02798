"""Registration, login and the caller's profile, through the public API."""

from __future__ import annotations

import uuid

from quart.testing import QuartClient

from tests.support.accounts import Account, login, register

PASSWORD = "correct horse battery"


def new_name() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


async def test_register_returns_the_user_with_signup_credits(client: QuartClient, settings):
    name = new_name()
    response = await client.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    assert response.status_code == 201
    data = (await response.get_json())["data"]
    assert data["username"] == name
    assert data["nickname"] == name
    assert data["level"] == 0
    assert data["disabled"] is False
    assert data["credits"] == settings.new_user_credits
    assert data["has_avatar"] is False
    assert "password" not in str(data)


async def test_register_taken_username_is_409(client: QuartClient, user: Account):
    response = await client.post(
        "/api/v1/users", json={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 409
    body = await response.get_json()
    assert body["code"] == 409
    assert user.username in body["message"]


async def test_register_validates_username_and_password(client: QuartClient):
    cases = [
        ({"username": "ab", "password": PASSWORD}, "username"),
        ({"username": "has space", "password": PASSWORD}, "username"),
        ({"username": "wechat:x", "password": PASSWORD}, "username"),
        ({"username": "1digitfirst", "password": PASSWORD}, "username"),
        ({"username": new_name(), "password": "short"}, "password"),
        ({"username": new_name()}, "password"),
        ({"password": PASSWORD}, "username"),
    ]
    for payload, field in cases:
        response = await client.post("/api/v1/users", json=payload)
        assert response.status_code == 422, payload
        assert field in (await response.get_json())["message"], payload


async def test_register_non_json_body_is_4xx(client: QuartClient):
    response = await client.post(
        "/api/v1/users", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert (await response.get_json())["code"] == response.status_code


async def test_me_needs_a_token(client: QuartClient):
    response = await client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert "Bearer" in (await response.get_json())["message"]
    bad = await client.get("/api/v1/users/me", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401


async def test_me_returns_the_callers_account(client: QuartClient, user: Account):
    response = await client.get("/api/v1/users/me", headers=user.headers)
    assert response.status_code == 200
    data = (await response.get_json())["data"]
    assert data["id"] == user.id
    assert data["username"] == user.username


async def test_patch_me_changes_nickname_and_email(client: QuartClient, user: Account):
    response = await client.patch(
        "/api/v1/users/me",
        json={"nickname": "Alice", "email": "a@example.com"},
        headers=user.headers,
    )
    assert response.status_code == 200
    data = (await response.get_json())["data"]
    assert (data["nickname"], data["email"]) == ("Alice", "a@example.com")
    cleared = await client.patch("/api/v1/users/me", json={"email": None}, headers=user.headers)
    data = (await cleared.get_json())["data"]
    assert (data["nickname"], data["email"]) == ("Alice", None)


async def test_patch_me_rejects_bad_fields(client: QuartClient, user: Account):
    for payload, field in [
        ({"email": "not-an-email"}, "email"),
        ({"nickname": ""}, "nickname"),
        ({"password": "short"}, "password"),
    ]:
        response = await client.patch("/api/v1/users/me", json=payload, headers=user.headers)
        assert response.status_code == 422, payload
        assert field in (await response.get_json())["message"]


async def test_patch_me_needs_a_token(client: QuartClient):
    response = await client.patch("/api/v1/users/me", json={"nickname": "x"})
    assert response.status_code == 401


async def test_password_change_requires_the_current_password(client: QuartClient, user: Account):
    new = "a much better passphrase"
    for current in (None, "wrong password!"):
        payload = {"password": new} | ({"current_password": current} if current else {})
        response = await client.patch("/api/v1/users/me", json=payload, headers=user.headers)
        assert response.status_code == 400
        assert "current_password" in (await response.get_json())["message"]
    response = await client.patch(
        "/api/v1/users/me",
        json={"password": new, "current_password": user.password},
        headers=user.headers,
    )
    assert response.status_code == 200
    old = await client.post(
        "/api/v1/session/oauth2/token", form={"username": user.username, "password": user.password}
    )
    assert old.status_code == 401
    assert (await login(client, user.username, new)).id == user.id


async def test_accounts_helper_registers_distinct_users(client: QuartClient):
    first, second = await register(client), await register(client)
    assert first.id != second.id
