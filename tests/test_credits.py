"""Balances, the ledger, redeeming over HTTP, admin adjustments, pricing, reservations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from quart.testing import QuartClient

from backend.errors import NotFound, PaymentRequired
from backend.models import CreditReservation, RedeemCode
from backend.models.credits import ReservationState
from backend.providers.base import ModelSpec
from backend.services import credits
from backend.services.pricing import price
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.ledger import assert_ledger_balanced, balance_of, release, reserve, settle

ME = "/api/v1/users/me/credits"


@pytest.fixture
async def member(client: QuartClient, settings: Settings) -> Account:
    return await create_account(settings, password=False)


@pytest.fixture
async def manager(client: QuartClient, settings: Settings) -> Account:
    return await create_account(settings, admin=True, password=False)


async def new_code(code: str | None = None, **fields) -> RedeemCode:
    fields = {"credits": 25, "max_uses": 1, **fields}
    return await RedeemCode.create(
        code=code or f"T{datetime.now(UTC).timestamp():.6f}".replace(".", ""), **fields
    )


# Pricing.


def spec(prompt: float, completion: float) -> ModelSpec:
    return ModelSpec(
        id="m", provider="p", upstream="u", prompt_price=prompt, completion_price=completion
    )


def test_free_model_costs_nothing():
    assert price(spec(0, 0), 10_000, 10_000) == 0


def test_price_rounds_up_per_thousand_tokens():
    assert price(spec(1, 2), 1000, 1000) == 3
    assert price(spec(1, 2), 1, 0) == 1
    assert price(spec(0.5, 0), 3000, 0) == 2
    assert price(spec(0.5, 0), 3001, 0) == 2
    assert price(spec(0.5, 0), 4001, 0) == 3


def test_price_is_exact_for_decimal_prices():
    # 3000 * 0.1 / 1000 is 0.30000000000000004 in floats; exactly 0.3 -> 1 credit.
    assert price(spec(0.1, 0.1), 3000, 7000) == 1
    assert price(spec(0.3, 0), 10_000, 0) == 3


def test_price_refuses_negative_tokens():
    with pytest.raises(ValueError):
        price(spec(1, 1), -1, 0)


# Signup.


async def test_new_user_starts_with_signup_credits(
    client: QuartClient, member: Account, settings: Settings
):
    response = await client.get(ME, headers=member.headers)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["code"] == 0
    assert body["data"]["balance"] == settings.new_user_credits
    [entry] = body["data"]["items"]
    assert entry["reason"] == "signup"
    assert entry["delta"] == entry["balance_after"] == settings.new_user_credits


# GET /users/me/credits.


async def test_history_is_newest_first_and_paginated(client: QuartClient, member: Account):
    for _ in range(3):
        await release(await reserve(member.id, 7, task_id="t1"))
    response = await client.get(f"{ME}?page=1&page_size=2", headers=member.headers)
    data = (await response.get_json())["data"]
    assert data["total"] == 7  # signup + 3 x (reserve, release)
    assert (data["page"], data["page_size"]) == (1, 2)
    assert [e["reason"] for e in data["items"]] == ["release", "reserve"]
    assert [e["delta"] for e in data["items"]] == [7, -7]
    assert data["items"][1]["task_id"] == "t1"
    last = (
        await (await client.get(f"{ME}?page=4&page_size=2", headers=member.headers)).get_json()
    )["data"]
    assert [e["reason"] for e in last["items"]] == ["signup"]
    assert data["balance"] == await balance_of(member.id)


@pytest.mark.parametrize("query", ["page=0", "page_size=0", "page_size=100000", "page=abc"])
async def test_history_rejects_bad_pagination(client: QuartClient, member: Account, query: str):
    response = await client.get(f"{ME}?{query}", headers=member.headers)
    assert response.status_code == 422
    body = await response.get_json()
    assert body["code"] == 422 and "page" in body["message"]


async def test_history_requires_auth(client: QuartClient):
    response = await client.get(ME)
    assert response.status_code == 401
    assert (await response.get_json())["code"] == 401
    bad = await client.get(ME, headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401


# POST /users/me/credits (redeem).


async def test_redeem_adds_credits_and_records_the_code(client: QuartClient, member: Account):
    code = await new_code(credits=40)
    before = await balance_of(member.id)
    response = await client.post(ME, json={"code": code.code}, headers=member.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    data = (await response.get_json())["data"]
    assert data == {"code": code.code, "credits": 40, "balance": before + 40}
    history = (await (await client.get(ME, headers=member.headers)).get_json())["data"]
    assert history["items"][0]["reason"] == "redeem"
    assert history["items"][0]["code"] == code.code
    assert history["items"][0]["balance_after"] == before + 40
    await code.refresh_from_db()
    assert code.uses == 1
    await assert_ledger_balanced()


async def test_redeem_unknown_code_is_404(client: QuartClient, member: Account):
    response = await client.post(ME, json={"code": "NOPE-NOPE-NOPE"}, headers=member.headers)
    assert response.status_code == 404
    assert "NOPE-NOPE-NOPE" in (await response.get_json())["message"]


async def test_redeem_expired_code_is_410(client: QuartClient, member: Account):
    code = await new_code(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    before = await balance_of(member.id)
    response = await client.post(ME, json={"code": code.code}, headers=member.headers)
    assert response.status_code == 410
    assert "expired" in (await response.get_json())["message"]
    assert await balance_of(member.id) == before


async def test_redeem_twice_by_one_user_is_409(client: QuartClient, member: Account):
    code = await new_code(max_uses=5)
    assert (
        await client.post(ME, json={"code": code.code}, headers=member.headers)
    ).status_code == 200
    again = await client.post(ME, json={"code": code.code}, headers=member.headers)
    assert again.status_code == 409
    assert "already redeemed" in (await again.get_json())["message"]
    await code.refresh_from_db()
    assert code.uses == 1


async def test_redeem_used_up_code_is_409(client: QuartClient, member: Account, settings: Settings):
    code = await new_code(max_uses=1)
    first = await create_account(settings, password=False)
    assert (
        await client.post(ME, json={"code": code.code}, headers=first.headers)
    ).status_code == 200
    response = await client.post(ME, json={"code": code.code}, headers=member.headers)
    assert response.status_code == 409
    assert "used up" in (await response.get_json())["message"]
    await assert_ledger_balanced()


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": 12}, {"code": "x" * 65}, ["code"]])
async def test_redeem_rejects_malformed_body(client: QuartClient, member: Account, body):
    response = await client.post(ME, json=body, headers=member.headers)
    assert response.status_code == 422
    assert (await response.get_json())["code"] == 422


async def test_redeem_requires_auth(client: QuartClient):
    code = await new_code()
    response = await client.post(ME, json={"code": code.code})
    assert response.status_code == 401
    await code.refresh_from_db()
    assert code.uses == 0


# POST /users/{id}/credits (admin adjustment).


async def test_admin_grants_and_deducts(client: QuartClient, member: Account, manager: Account):
    before = await balance_of(member.id)
    url = f"/api/v1/users/{member.id}/credits"
    response = await client.post(
        url, json={"delta": 50, "reason": "goodwill"}, headers=manager.headers
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["data"] == {
        "user_id": member.id,
        "delta": 50,
        "balance": before + 50,
    }
    response = await client.post(url, json={"delta": -(before + 50)}, headers=manager.headers)
    assert (await response.get_json())["data"]["balance"] == 0
    history = (await (await client.get(ME, headers=member.headers)).get_json())["data"]
    assert [(e["reason"], e["delta"], e["note"]) for e in history["items"][:2]] == [
        ("admin", -(before + 50), None),
        ("admin", 50, "goodwill"),
    ]
    await assert_ledger_balanced()


async def test_admin_cannot_take_balance_below_zero(
    client: QuartClient, member: Account, manager: Account
):
    before = await balance_of(member.id)
    response = await client.post(
        f"/api/v1/users/{member.id}/credits", json={"delta": -(before + 1)}, headers=manager.headers
    )
    assert response.status_code == 409
    assert f"balance is {before}" in (await response.get_json())["message"]
    assert await balance_of(member.id) == before


async def test_adjust_is_admin_only(client: QuartClient, member: Account, settings: Settings):
    other = await create_account(settings, password=False)
    response = await client.post(
        f"/api/v1/users/{other.id}/credits", json={"delta": 10}, headers=member.headers
    )
    assert response.status_code == 403
    assert (
        await client.post(f"/api/v1/users/{other.id}/credits", json={"delta": 10})
    ).status_code == 401
    assert await balance_of(other.id) == settings.new_user_credits


async def test_adjust_unknown_user_is_404(client: QuartClient, manager: Account):
    response = await client.post(
        "/api/v1/users/99999999/credits", json={"delta": 10}, headers=manager.headers
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    "body", [{}, {"delta": 0}, {"delta": "ten"}, {"delta": 1.5}, {"delta": 1, "reason": "r" * 256}]
)
async def test_adjust_rejects_malformed_body(
    client: QuartClient, member: Account, manager: Account, body
):
    response = await client.post(
        f"/api/v1/users/{member.id}/credits", json=body, headers=manager.headers
    )
    assert response.status_code == 422


# Reservations through the service API.


async def test_reserve_then_settle_charges_actual_and_refunds_rest(
    client: QuartClient, settings: Settings
):
    account = await create_account(settings, credits=100, password=False)
    rid = await reserve(account.id, 30, task_id="task-a")
    assert await balance_of(account.id) == 70
    assert await settle(rid, 12) == 12
    assert await balance_of(account.id) == 88
    reservation = await CreditReservation.get(id=rid)
    assert (reservation.state, reservation.charged) == (ReservationState.SETTLED, 12)
    assert reservation.finished_at is not None
    await assert_ledger_balanced()


async def test_settle_caps_the_charge_at_the_hold(client: QuartClient, settings: Settings):
    account = await create_account(settings, credits=100, password=False)
    rid = await reserve(account.id, 30)
    assert await settle(rid, 1000) == 30
    assert await balance_of(account.id) == 70


async def test_settle_is_idempotent(client: QuartClient, settings: Settings):
    account = await create_account(settings, credits=100, password=False)
    rid = await reserve(account.id, 30)
    assert await settle(rid, 10) == 10
    assert await settle(rid, 25) == 10
    await release(rid)
    assert await balance_of(account.id) == 90
    await assert_ledger_balanced()


async def test_release_refunds_everything_once(client: QuartClient, settings: Settings):
    account = await create_account(settings, credits=100, password=False)
    rid = await reserve(account.id, 30)
    await release(rid)
    await release(rid)
    assert await settle(rid, 30) == 0
    assert await balance_of(account.id) == 100
    assert (await CreditReservation.get(id=rid)).state == ReservationState.RELEASED
    await assert_ledger_balanced()


async def test_reserve_more_than_balance_is_402_with_balance_and_need(
    client: QuartClient, settings: Settings
):
    account = await create_account(settings, credits=5, password=False)
    with pytest.raises(PaymentRequired) as raised:
        await reserve(account.id, 6)
    assert "needs 6" in raised.value.message and "balance is 5" in raised.value.message
    assert raised.value.status == 402
    assert await balance_of(account.id) == 5
    assert not await CreditReservation.filter(user_id=account.id).exists()


async def test_reserve_zero_works_with_an_empty_balance(client: QuartClient, settings: Settings):
    account = await create_account(settings, credits=0, password=False)
    rid = await reserve(account.id, 0)
    assert await settle(rid, 0) == 0
    assert await balance_of(account.id) == 0
    await assert_ledger_balanced()


async def test_reserve_exact_balance_leaves_zero(client: QuartClient, settings: Settings):
    account = await create_account(settings, credits=9, password=False)
    await reserve(account.id, 9)
    assert await balance_of(account.id) == 0


async def test_unknown_reservation_is_not_found(client: QuartClient):
    with pytest.raises(NotFound):
        await settle("0" * 32, 1)
    with pytest.raises(NotFound):
        await release("0" * 32)


async def test_negative_amounts_are_refused(client: QuartClient, settings: Settings):
    account = await create_account(settings, credits=10, password=False)
    with pytest.raises(ValueError):
        await reserve(account.id, -1)
    rid = await reserve(account.id, 1)
    with pytest.raises(ValueError):
        await settle(rid, -1)
    assert await balance_of(account.id) == 9


# GET /users/{id}/credits (admin view).


async def test_admin_sees_a_users_ledger(client: QuartClient, member: Account, manager: Account):
    await credits.adjust(member.id, 5, "bonus")
    response = await client.get(
        f"/api/v1/users/{member.id}/credits?page_size=1", headers=manager.headers
    )
    assert response.status_code == 200
    data = (await response.get_json())["data"]
    assert data["balance"] == await balance_of(member.id)
    assert data["total"] == 2
    assert [(e["reason"], e["delta"], e["note"]) for e in data["items"]] == [("admin", 5, "bonus")]


async def test_viewing_a_users_ledger_is_admin_only(
    client: QuartClient, member: Account, settings: Settings
):
    other = await create_account(settings, password=False)
    url = f"/api/v1/users/{other.id}/credits"
    assert (await client.get(url, headers=member.headers)).status_code == 403
    assert (await client.get(url)).status_code == 401


async def test_viewing_unknown_users_ledger_is_404(client: QuartClient, manager: Account):
    response = await client.get("/api/v1/users/99999999/credits", headers=manager.headers)
    assert response.status_code == 404
    assert (await response.get_json())["code"] == 404


async def test_viewing_a_users_ledger_rejects_bad_pagination(
    client: QuartClient, member: Account, manager: Account
):
    response = await client.get(
        f"/api/v1/users/{member.id}/credits?page=-1", headers=manager.headers
    )
    assert response.status_code == 422
