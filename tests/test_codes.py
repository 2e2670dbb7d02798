"""Administering redeem codes: mint, list, inspect with redemptions, withdraw."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from quart.testing import QuartClient

from backend.models import RedeemCode
from backend.services.codes import ALPHABET, generate_code
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.ledger import assert_ledger_balanced

CODES = "/api/v1/codes"
REDEEM = "/api/v1/users/me/credits"
GENERATED = re.compile(rf"^[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}$")


@pytest.fixture
async def member(client: QuartClient, settings: Settings) -> Account:
    return await create_account(settings, password=False)


@pytest.fixture
async def manager(client: QuartClient, settings: Settings) -> Account:
    return await create_account(settings, admin=True, password=False)


def in_future(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def mint(client: QuartClient, manager: Account, **body) -> dict:
    response = await client.post(CODES, json={"credits": 10, **body}, headers=manager.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["data"]


def test_generated_codes_are_readable_and_distinct():
    codes = {generate_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(GENERATED.match(code) for code in codes)


# POST /codes.


async def test_create_generates_a_readable_code(client: QuartClient, manager: Account):
    expires = in_future(days=7)
    data = await mint(client, manager, credits=30, max_uses=3, expires_at=expires)
    assert GENERATED.match(data["code"])
    assert (data["credits"], data["max_uses"], data["uses"]) == (30, 3, 0)
    assert datetime.fromisoformat(data["expires_at"]) == datetime.fromisoformat(expires)
    assert data["created_at"]
    stored = await RedeemCode.get(code=data["code"])
    assert (stored.credits, stored.max_uses, stored.created_by_id) == (30, 3, manager.id)


async def test_create_with_own_code_and_defaults(client: QuartClient, manager: Account):
    data = await mint(client, manager, code="WELCOME-2026")
    assert data["code"] == "WELCOME-2026"
    assert (data["max_uses"], data["expires_at"]) == (1, None)


async def test_create_naive_expiry_means_utc(client: QuartClient, manager: Account):
    naive = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
    data = await mint(client, manager, expires_at=naive.isoformat())
    assert datetime.fromisoformat(data["expires_at"]) == naive.replace(tzinfo=UTC)


async def test_create_duplicate_code_is_409(client: QuartClient, manager: Account):
    await mint(client, manager, code="DUPLICATE-1")
    response = await client.post(
        CODES, json={"credits": 5, "code": "DUPLICATE-1"}, headers=manager.headers
    )
    assert response.status_code == 409
    assert "already exists" in (await response.get_json())["message"]


async def test_create_past_expiry_is_400(client: QuartClient, manager: Account):
    response = await client.post(
        CODES, json={"credits": 5, "expires_at": in_future(seconds=-5)}, headers=manager.headers
    )
    assert response.status_code == 400
    assert "expires_at" in (await response.get_json())["message"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"credits": 0},
        {"credits": -5},
        {"credits": 5, "max_uses": 0},
        {"credits": "many"},
        {"credits": 5, "expires_at": "tomorrow"},
        {"credits": 5, "code": "a b"},
        {"credits": 5, "code": "abc"},
        {"credits": 5, "code": "x" * 65},
    ],
)
async def test_create_rejects_malformed_body(client: QuartClient, manager: Account, body):
    response = await client.post(CODES, json=body, headers=manager.headers)
    assert response.status_code == 422
    assert (await response.get_json())["code"] == 422


async def test_create_is_admin_only(client: QuartClient, member: Account):
    response = await client.post(
        CODES, json={"credits": 5, "code": "SNEAKY-1"}, headers=member.headers
    )
    assert response.status_code == 403
    assert (await client.post(CODES, json={"credits": 5, "code": "SNEAKY-1"})).status_code == 401
    assert not await RedeemCode.filter(code="SNEAKY-1").exists()


# GET /codes and /codes/{code}.


async def test_get_shows_who_redeemed_and_when(
    client: QuartClient, manager: Account, settings: Settings
):
    data = await mint(client, manager, max_uses=5)
    redeemers = [await create_account(settings, password=False) for _ in range(2)]
    for account in redeemers:
        response = await client.post(REDEEM, json={"code": data["code"]}, headers=account.headers)
        assert response.status_code == 200
    response = await client.get(f"{CODES}/{data['code']}", headers=manager.headers)
    assert response.status_code == 200
    detail = (await response.get_json())["data"]
    assert detail["uses"] == 2
    assert [(r["user_id"], r["username"]) for r in detail["redemptions"]] == [
        (a.id, a.username) for a in redeemers
    ]
    assert all(datetime.fromisoformat(r["redeemed_at"]) for r in detail["redemptions"])
    await assert_ledger_balanced()


async def test_get_unknown_code_is_404(client: QuartClient, manager: Account):
    response = await client.get(f"{CODES}/NO-SUCH-CODE", headers=manager.headers)
    assert response.status_code == 404


async def test_get_and_list_are_admin_only(client: QuartClient, manager: Account, member: Account):
    data = await mint(client, manager)
    assert (await client.get(f"{CODES}/{data['code']}", headers=member.headers)).status_code == 403
    assert (await client.get(CODES, headers=member.headers)).status_code == 403
    assert (await client.get(f"{CODES}/{data['code']}")).status_code == 401
    assert (await client.get(CODES)).status_code == 401


async def test_list_is_paginated_newest_first(client: QuartClient, manager: Account):
    minted = [(await mint(client, manager))["code"] for _ in range(3)]
    response = await client.get(f"{CODES}?page=1&page_size=2", headers=manager.headers)
    assert response.status_code == 200
    data = (await response.get_json())["data"]
    assert data["total"] == await RedeemCode.all().count()
    assert (data["page"], data["page_size"]) == (1, 2)
    assert [c["code"] for c in data["items"]] == minted[::-1][:2]
    second = await (
        await client.get(f"{CODES}?page=2&page_size=2", headers=manager.headers)
    ).get_json()
    assert second["data"]["items"][0]["code"] == minted[0]


@pytest.mark.parametrize("query", ["page=0", "page_size=0", "page_size=1001", "page=x"])
async def test_list_rejects_bad_pagination(client: QuartClient, manager: Account, query: str):
    response = await client.get(f"{CODES}?{query}", headers=manager.headers)
    assert response.status_code == 422


# DELETE /codes/{code}.


async def test_delete_withdraws_the_code_but_keeps_granted_credits(
    client: QuartClient, manager: Account, member: Account
):
    data = await mint(client, manager, credits=15, max_uses=2)
    redeemed = await client.post(REDEEM, json={"code": data["code"]}, headers=member.headers)
    balance = (await redeemed.get_json())["data"]["balance"]
    response = await client.delete(f"{CODES}/{data['code']}", headers=manager.headers)
    assert response.status_code == 200
    assert (await response.get_json())["data"] == {"code": data["code"], "deleted": True}
    assert (await client.get(f"{CODES}/{data['code']}", headers=manager.headers)).status_code == 404
    other = await create_account(client.app.config["SETTINGS"], password=False)
    again = await client.post(REDEEM, json={"code": data["code"]}, headers=other.headers)
    assert again.status_code == 404
    history = (await (await client.get(REDEEM, headers=member.headers)).get_json())["data"]
    assert history["balance"] == balance
    assert history["items"][0]["code"] == data["code"]
    await assert_ledger_balanced()


async def test_delete_unknown_code_is_404(client: QuartClient, manager: Account):
    response = await client.delete(f"{CODES}/NO-SUCH-CODE", headers=manager.headers)
    assert response.status_code == 404


async def test_delete_is_admin_only(client: QuartClient, manager: Account, member: Account):
    data = await mint(client, manager)
    assert (
        await client.delete(f"{CODES}/{data['code']}", headers=member.headers)
    ).status_code == 403
    assert (await client.delete(f"{CODES}/{data['code']}")).status_code == 401
    assert await RedeemCode.filter(code=data["code"]).exists()


async def test_routes_are_documented(client: QuartClient):
    paths = (await (await client.get("/openapi.json")).get_json())["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/codes"])
    assert {"get", "delete"} <= set(paths["/api/v1/codes/{code}"])
    assert {"get", "post"} <= set(paths["/api/v1/users/me/credits"])
    assert {"get", "post"} <= set(paths["/api/v1/users/{user_id}/credits"])
