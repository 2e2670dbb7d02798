"""OAuth2 password login, refresh-token rotation and logout."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import jwt
from quart.testing import QuartClient

from backend.constants import revoked_login_key
from backend.models import RefreshToken, User
from backend.services.tokens import sha256
from backend.settings import Settings
from tests.support.accounts import Account, login

TOKEN_URL = "/api/v1/session/oauth2/token"
ME = "/api/v1/users/me"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_password_grant_returns_rfc6749_fields(client: QuartClient, user: Account, settings):
    response = await client.post(
        TOKEN_URL,
        form={"grant_type": "password", "username": user.username, "password": user.password},
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.get_json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_ttl_seconds
    claims = jwt.decode(body["access_token"], settings.secret_key, algorithms=["HS256"])
    assert claims["sub"] == str(user.id)
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_seconds
    stored = await RefreshToken.get(token_hash=sha256(body["refresh_token"]))
    lifetime = stored.expires_at - stored.created_at
    assert abs(lifetime.total_seconds() - settings.refresh_token_ttl_seconds) < 5


async def test_wrong_password_and_unknown_user_get_the_same_401(client: QuartClient, user: Account):
    bodies = []
    for username, password in [(user.username, "wrong password"), ("nobody-here", "whatever1")]:
        response = await client.post(TOKEN_URL, form={"username": username, "password": password})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        bodies.append(await response.get_json())
    assert bodies[0] == bodies[1]
    assert bodies[0]["error"] == "invalid_grant"
    assert bodies[0]["code"] == 401
    assert bodies[0]["message"] == bodies[0]["error_description"]


async def test_password_grant_validates_the_form(client: QuartClient, user: Account):
    missing = await client.post(TOKEN_URL, form={"username": user.username})
    assert missing.status_code == 422
    assert "password" in (await missing.get_json())["message"]
    wrong_grant = await client.post(
        TOKEN_URL,
        form={"grant_type": "client_credentials", "username": user.username, "password": "x"},
    )
    assert wrong_grant.status_code == 422
    assert "grant_type" in (await wrong_grant.get_json())["message"]
    as_json = await client.post(
        TOKEN_URL, json={"username": user.username, "password": user.password}
    )
    assert as_json.status_code in (400, 415, 422)


async def test_refresh_rotates_and_the_old_token_is_dead(client: QuartClient, user: Account):
    response = await client.post(
        "/api/v1/session/refresh", json={"refresh_token": user.refresh_token}
    )
    assert response.status_code == 200
    pair = (await response.get_json())["data"]
    assert pair["refresh_token"] != user.refresh_token
    assert pair["token_type"] == "bearer"
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert (await me.get_json())["data"]["id"] == user.id

    reused = await client.post(
        "/api/v1/session/refresh", json={"refresh_token": user.refresh_token}
    )
    assert reused.status_code == 401
    assert "refresh token" in (await reused.get_json())["message"]
    again = await client.post(
        "/api/v1/session/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert again.status_code == 200


async def test_refresh_rejects_unknown_and_malformed(client: QuartClient):
    unknown = await client.post("/api/v1/session/refresh", json={"refresh_token": "rt_nope"})
    assert unknown.status_code == 401
    for payload in ({}, {"refresh_token": ""}, {"refresh_token": 5}):
        response = await client.post("/api/v1/session/refresh", json=payload)
        assert response.status_code == 422, payload
        assert "refresh_token" in (await response.get_json())["message"]


async def test_refresh_token_is_not_an_access_token(client: QuartClient, user: Account):
    response = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {user.refresh_token}"}
    )
    assert response.status_code == 401


async def test_expired_refresh_token_is_401(client: QuartClient, user: Account):
    await RefreshToken.filter(token_hash=sha256(user.refresh_token)).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    response = await client.post(
        "/api/v1/session/refresh", json={"refresh_token": user.refresh_token}
    )
    assert response.status_code == 401
    assert "expired" in (await response.get_json())["message"]


async def test_logout_revokes_the_refresh_token(client: QuartClient, user: Account):
    response = await client.post(
        "/api/v1/session/logout", json={"refresh_token": user.refresh_token}
    )
    assert response.status_code == 200
    assert (await response.get_json())["data"] == {"revoked": True}
    refresh = await client.post(
        "/api/v1/session/refresh", json={"refresh_token": user.refresh_token}
    )
    assert refresh.status_code == 401
    twice = await client.post("/api/v1/session/logout", json={"refresh_token": user.refresh_token})
    assert twice.status_code == 401
    malformed = await client.post("/api/v1/session/logout", json={"token": "x"})
    assert malformed.status_code == 422


async def test_concurrent_refreshes_of_one_token_yield_one_pair(client: QuartClient, user: Account):
    responses = await asyncio.gather(
        *[
            client.post("/api/v1/session/refresh", json={"refresh_token": user.refresh_token})
            for _ in range(5)
        ]
    )
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401, 401]


async def test_disabled_user_cannot_log_in_or_refresh(client: QuartClient, user: Account):
    await User.filter(id=user.id).update(disabled=True)
    login = await client.post(
        TOKEN_URL, form={"username": user.username, "password": user.password}
    )
    assert login.status_code == 401
    refresh = await client.post(
        "/api/v1/session/refresh", json={"refresh_token": user.refresh_token}
    )
    assert refresh.status_code == 401
    assert "disabled" in (await refresh.get_json())["message"]


async def test_openapi_documents_the_oauth2_password_flow(client: QuartClient):
    spec = await (await client.get("/openapi.json")).get_json()
    scheme = spec["components"]["securitySchemes"]["oauth2"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == TOKEN_URL
    me = spec["paths"]["/api/v1/users/me"]["get"]
    assert {"oauth2": []} in me["security"]
    body = spec["paths"][TOKEN_URL]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in body


async def test_logout_revokes_that_logins_access_tokens_at_once(client: QuartClient, user: Account):
    """Every access token of the login (also one from before a refresh) is 401 at once;
    another login of the same account is not touched."""
    other = await login(client, user.username, user.password)
    refreshed = await client.post(
        "/api/v1/session/refresh", json={"refresh_token": user.refresh_token}
    )
    pair = (await refreshed.get_json())["data"]
    for token in (user.access_token, pair["access_token"]):
        assert (await client.get(ME, headers=bearer(token))).status_code == 200
    response = await client.post(
        "/api/v1/session/logout", json={"refresh_token": pair["refresh_token"]}
    )
    assert response.status_code == 200
    for token in (user.access_token, pair["access_token"]):
        refused = await client.get(ME, headers=bearer(token))
        assert refused.status_code == 401
        assert "Logged out" in (await refused.get_json())["message"]
    assert (await client.get(ME, headers=bearer(other.access_token))).status_code == 200


async def test_the_deny_list_lasts_as_long_as_an_access_token(
    client: QuartClient, user: Account, settings, redis
):
    await client.post("/api/v1/session/logout", json={"refresh_token": user.refresh_token})
    login_id = jwt.decode(user.access_token, options={"verify_signature": False})["sid"]
    ttl = await redis.ttl(revoked_login_key(settings.redis_prefix, login_id))
    assert settings.access_token_ttl_seconds <= ttl <= settings.access_token_ttl_seconds + 10


def test_access_tokens_live_minutes_by_default():
    assert Settings(_env_file=None).access_token_ttl_seconds <= 15 * 60
