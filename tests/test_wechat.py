"""WeChat mini-program login against a local server speaking code2session."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from quart import Quart
from quart.testing import QuartClient

from backend.models import RefreshToken, User
from backend.models.users import LoginKind
from backend.services.tokens import sha256
from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.live_server import free_port
from tests.support.wechat_server import FakeWechat, fake_wechat_server

TOKEN = "/api/v1/session/wechat/token"
REFRESH = "/api/v1/session/wechat/refresh"
APPID, SECRET = "wx-test-appid", "wx-test-secret"


def configure(app: Quart, **changes: object) -> Settings:
    """Swap the running app's settings; returns the previous ones for restoring."""
    previous = app.config["SETTINGS"]
    app.config["SETTINGS"] = previous.model_copy(update=changes)
    return previous


@pytest.fixture
async def wechat(app: Quart) -> AsyncIterator[FakeWechat]:
    async with fake_wechat_server(APPID, SECRET) as fake:
        previous = configure(
            app,
            wechat_appid=APPID,
            wechat_secret=SECRET,
            wechat_base_url=fake.base_url,
            wechat_timeout_seconds=1.0,
        )
        yield fake
        app.config["SETTINGS"] = previous


def new_openid() -> str:
    return "o" + uuid.uuid4().hex[:27]


async def wechat_login(client: QuartClient, openid: str) -> dict:
    response = await client.post(TOKEN, json={"code": f"ok-{openid}"})
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


async def test_first_login_creates_the_user_and_later_logins_reuse_it(
    client: QuartClient, wechat: FakeWechat, settings: Settings
):
    openid = new_openid()
    body = await wechat_login(client, openid)
    assert body["code"] == 0
    pair = body["data"]
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert "session_key" not in str(body)
    assert wechat.queries[-1] == {
        "appid": APPID,
        "secret": SECRET,
        "js_code": f"ok-{openid}",
        "grant_type": "authorization_code",
    }
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    me = (await (await client.get("/api/v1/users/me", headers=headers)).get_json())["data"]
    assert openid in me["username"]
    assert me["credits"] == settings.new_user_credits

    again = (await wechat_login(client, openid))["data"]
    headers = {"Authorization": f"Bearer {again['access_token']}"}
    me_again = (await (await client.get("/api/v1/users/me", headers=headers)).get_json())["data"]
    assert me_again["id"] == me["id"]
    stored = await RefreshToken.get(token_hash=sha256(again["refresh_token"]))
    assert stored.kind == LoginKind.WECHAT


@pytest.mark.parametrize(
    ("code", "status", "words"),
    [
        ("invalid", 401, "wx.login"),
        ("used", 401, "wx.login"),
        ("ratelimit", 429, "rate limit"),
        ("risky", 403, "high-risk"),
        ("busy", 502, "busy"),
        ("partial", 502, "incomplete"),
        ("garbage", 502, "unreadable"),
        ("down", 502, "unreadable"),
    ],
)
async def test_wechat_errors_map_to_clear_statuses(
    client: QuartClient, wechat: FakeWechat, code: str, status: int, words: str
):
    response = await client.post(TOKEN, json={"code": code})
    assert response.status_code == status
    body = await response.get_json()
    assert body["code"] == status
    assert words in body["message"]


async def test_wrong_app_credentials_are_a_502_naming_the_errcode(
    client: QuartClient, wechat: FakeWechat, app: Quart
):
    configure(app, wechat_secret="not-the-secret")
    response = await client.post(TOKEN, json={"code": f"ok-{new_openid()}"})
    assert response.status_code == 502
    assert "40013" in (await response.get_json())["message"]


async def test_unreachable_or_slow_wechat_is_502(
    client: QuartClient, wechat: FakeWechat, app: Quart
):
    slow = await client.post(TOKEN, json={"code": "slow"})
    assert slow.status_code == 502
    configure(app, wechat_base_url=f"http://127.0.0.1:{free_port()}")  # nothing listens
    response = await client.post(TOKEN, json={"code": "ok-x"})
    assert response.status_code == 502
    assert "reached" in (await response.get_json())["message"]


async def test_not_configured_is_503(client: QuartClient):
    response = await client.post(TOKEN, json={"code": "ok-anything"})
    assert response.status_code == 503
    assert "WECHAT_APPID" in (await response.get_json())["message"]


async def test_login_validates_the_code(client: QuartClient, wechat: FakeWechat):
    for payload in ({}, {"code": ""}, {"code": 12}):
        response = await client.post(TOKEN, json=payload)
        assert response.status_code == 422, payload
        assert "code" in (await response.get_json())["message"]
    assert wechat.queries == []


async def test_wechat_refresh_rotates(client: QuartClient, wechat: FakeWechat):
    pair = (await wechat_login(client, new_openid()))["data"]
    response = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert response.status_code == 200
    rotated = (await response.get_json())["data"]
    assert rotated["refresh_token"] != pair["refresh_token"]
    reused = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert reused.status_code == 401
    stored = await RefreshToken.get(token_hash=sha256(rotated["refresh_token"]))
    assert stored.kind == LoginKind.WECHAT


async def test_wechat_refresh_refuses_password_refresh_tokens(client: QuartClient, user: Account):
    response = await client.post(REFRESH, json={"refresh_token": user.refresh_token})
    assert response.status_code == 401
    assert "wechat" in (await response.get_json())["message"]
    still = await client.post("/api/v1/session/refresh", json={"refresh_token": user.refresh_token})
    assert still.status_code == 200


async def test_wechat_refresh_rejects_unknown_and_malformed(client: QuartClient):
    assert (await client.post(REFRESH, json={"refresh_token": "rt_x"})).status_code == 401
    assert (await client.post(REFRESH, json={})).status_code == 422


async def test_disabled_wechat_user_cannot_log_in(
    client: QuartClient, wechat: FakeWechat, admin: Account
):
    openid = new_openid()
    pair = (await wechat_login(client, openid))["data"]
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    user_id = (await (await client.get("/api/v1/users/me", headers=headers)).get_json())["data"][
        "id"
    ]
    await client.post(f"/api/v1/users/{user_id}/disable", headers=admin.headers)
    response = await client.post(TOKEN, json={"code": f"ok-{openid}"})
    assert response.status_code == 401
    assert "disabled" in (await response.get_json())["message"]


async def test_concurrent_first_logins_create_one_account(client: QuartClient, wechat: FakeWechat):
    openid = new_openid()
    responses = await asyncio.gather(
        *[client.post(TOKEN, json={"code": f"ok-{openid}"}) for _ in range(5)]
    )
    assert [r.status_code for r in responses] == [200] * 5
    ids = set()
    for response in responses:
        token = (await response.get_json())["data"]["access_token"]
        me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        ids.add((await me.get_json())["data"]["id"])
    assert len(ids) == 1
    assert await User.filter(wechat_openid=openid).count() == 1
