"""Credits under concurrency: many coroutines racing through the real services and HTTP.

After every race the ledger invariants hold: balances never negative, each equal to
the sum of its ledger, codes within `max_uses`, reservations finished exactly once.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import threading
import time

import asyncpg
import pytest
from quart.testing import QuartClient
from tortoise.exceptions import IntegrityError, OperationalError

from backend.errors import ApiError, Conflict, PaymentRequired
from backend.models import CodeRedemption, CreditEntry, CreditReservation, RedeemCode
from backend.models.credits import CreditReason, ReservationState
from backend.services import codes, credits
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.ledger import assert_ledger_balanced, balance_of, release, reserve, settle

REDEEM = "/api/v1/users/me/credits"
POSTGRES = os.environ.get("TEST_DATABASE", "sqlite") == "postgres"


@pytest.fixture
async def manager(client: QuartClient, settings: Settings) -> Account:
    return await create_account(settings, admin=True, password=False)


async def accounts(settings: Settings, count: int, *, credits: int | None = None) -> list[Account]:
    return list(
        await asyncio.gather(
            *(create_account(settings, credits=credits, password=False) for _ in range(count))
        )
    )


async def outcomes(*calls) -> list:
    """Run calls concurrently; each result is the value or the ApiError raised."""
    return list(await asyncio.gather(*calls, return_exceptions=True))


def split(results: list) -> tuple[list, list]:
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, ApiError)
    ]
    assert not unexpected, unexpected
    return [r for r in results if not isinstance(r, ApiError)], [
        r for r in results if isinstance(r, ApiError)
    ]


# Redeeming.


async def test_single_use_code_redeemed_by_60_users_at_once(
    client: QuartClient, settings: Settings
):
    users = await accounts(settings, 60)
    code = await RedeemCode.create(code="RACE-SINGLE-1", credits=50, max_uses=1)
    won, lost = split(await outcomes(*(codes.redeem(u.id, code.code) for u in users)))
    assert len(won) == 1 and len(lost) == 59
    assert all(isinstance(e, Conflict) and "used up" in e.message for e in lost)
    await code.refresh_from_db()
    assert code.uses == 1
    assert await CodeRedemption.filter(code_id=code.code).count() == 1
    assert await CreditEntry.filter(code=code.code).count() == 1
    winner = (await CodeRedemption.get(code_id=code.code)).user_id
    assert winner in {u.id for u in users}
    assert await balance_of(winner) == settings.new_user_credits + 50
    await assert_ledger_balanced()


async def test_single_use_code_redeemed_over_http_by_50_users(
    client: QuartClient, settings: Settings
):
    users = await accounts(settings, 50)
    code = await RedeemCode.create(code="RACE-HTTP-1", credits=20, max_uses=1)
    responses = await asyncio.gather(
        *(client.post(REDEEM, json={"code": code.code}, headers=u.headers) for u in users)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 49
    for response in responses:
        body = await response.get_json()
        assert body["code"] in (0, 409)
    await code.refresh_from_db()
    assert code.uses == 1
    await assert_ledger_balanced()


async def test_ten_use_code_redeemed_by_50_users_at_once(client: QuartClient, settings: Settings):
    users = await accounts(settings, 50)
    code = await RedeemCode.create(code="RACE-TEN-1", credits=5, max_uses=10)
    won, lost = split(await outcomes(*(codes.redeem(u.id, code.code) for u in users)))
    assert len(won) == 10 and len(lost) == 40
    assert all(isinstance(e, Conflict) for e in lost)
    await code.refresh_from_db()
    assert code.uses == 10
    redeemers = set(
        await CodeRedemption.filter(code_id=code.code).values_list("user_id", flat=True)
    )
    assert len(redeemers) == 10
    for user in users:
        expected = settings.new_user_credits + (5 if user.id in redeemers else 0)
        assert await balance_of(user.id) == expected
    await assert_ledger_balanced()


async def test_one_user_redeeming_a_multi_use_code_30_times_at_once(
    client: QuartClient, settings: Settings
):
    [user] = await accounts(settings, 1)
    code = await RedeemCode.create(code="RACE-SELF-1", credits=7, max_uses=100)
    won, lost = split(await outcomes(*(codes.redeem(user.id, code.code) for _ in range(30))))
    assert len(won) == 1 and len(lost) == 29
    assert all(isinstance(e, Conflict) and "already redeemed" in e.message for e in lost)
    await code.refresh_from_db()
    assert code.uses == 1
    assert await balance_of(user.id) == settings.new_user_credits + 7
    await assert_ledger_balanced()


async def test_redeems_racing_a_withdrawal_never_over_grant(
    client: QuartClient, settings: Settings, manager: Account
):
    users = await accounts(settings, 30)
    code = await RedeemCode.create(code="RACE-DELETE-1", credits=3, max_uses=30)
    results = await asyncio.gather(
        *(client.post(REDEEM, json={"code": code.code}, headers=u.headers) for u in users[:15]),
        client.delete(f"/api/v1/codes/{code.code}", headers=manager.headers),
        *(client.post(REDEEM, json={"code": code.code}, headers=u.headers) for u in users[15:]),
    )
    assert all(r.status_code in (200, 404, 409) for r in results)
    balances = [await balance_of(u.id) for u in users]
    granted = balances.count(settings.new_user_credits + 3)
    assert granted + balances.count(settings.new_user_credits) == len(users)
    assert granted == await CreditEntry.filter(code=code.code).count()
    await assert_ledger_balanced()


# Reserving against one balance.


async def test_50_reserves_against_one_balance(client: QuartClient, settings: Settings):
    [user] = await accounts(settings, 1, credits=100)
    won, lost = split(await outcomes(*(reserve(user.id, 7) for _ in range(50))))
    assert len(won) == 100 // 7 and len(set(won)) == len(won)
    assert all(isinstance(e, PaymentRequired) and e.status == 402 for e in lost)
    assert await balance_of(user.id) == 100 - 7 * len(won)
    await assert_ledger_balanced()


async def test_random_reserves_never_overdraw(client: QuartClient, settings: Settings):
    [user] = await accounts(settings, 1, credits=500)
    amounts = [random.randint(0, 60) for _ in range(80)]
    results = await outcomes(*(reserve(user.id, a) for a in amounts))
    won, lost = split(results)
    assert won and all(isinstance(e, PaymentRequired) for e in lost)
    held = sum(a for a, r in zip(amounts, results, strict=True) if not isinstance(r, ApiError))
    assert held <= 500
    assert await balance_of(user.id) == 500 - held >= 0
    assert held == sum(
        await CreditReservation.filter(user_id=user.id).values_list("amount", flat=True)
    )
    await assert_ledger_balanced()


async def test_reserves_racing_redeems_and_admin_deductions(
    client: QuartClient, settings: Settings, manager: Account
):
    [user] = await accounts(settings, 1, credits=50)
    code = await RedeemCode.create(code="RACE-MIX-1", credits=40, max_uses=1)
    deduct = f"/api/v1/users/{user.id}/credits"
    results = await asyncio.gather(
        *(reserve(user.id, 9) for _ in range(10)),
        codes.redeem(user.id, code.code),
        *(client.post(deduct, json={"delta": -8}, headers=manager.headers) for _ in range(10)),
        return_exceptions=True,
    )
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, ApiError)
    ]
    assert not unexpected, unexpected
    assert all(r.status_code in (200, 409) for r in results[11:])
    assert await balance_of(user.id) >= 0
    await assert_ledger_balanced()


async def test_admin_deductions_over_http_stop_at_zero(
    client: QuartClient, settings: Settings, manager: Account
):
    [user] = await accounts(settings, 1, credits=100)
    url = f"/api/v1/users/{user.id}/credits"
    responses = await asyncio.gather(
        *(client.post(url, json={"delta": -10}, headers=manager.headers) for _ in range(30))
    )
    assert sorted(r.status_code for r in responses) == [200] * 10 + [409] * 20
    assert await balance_of(user.id) == 0
    await assert_ledger_balanced()


# Settle and release racing on one reservation.


async def test_settles_and_releases_racing_on_one_reservation(
    client: QuartClient, settings: Settings
):
    [user] = await accounts(settings, 1, credits=100)
    rid = await reserve(user.id, 40, task_id="race-task")
    actuals = [random.randint(0, 60) for _ in range(20)]
    calls = [settle(rid, a) for a in actuals] + [release(rid) for _ in range(20)]
    random.shuffle(calls)
    results = await asyncio.gather(*calls)
    reservation = await CreditReservation.get(id=rid)
    assert reservation.state in (ReservationState.SETTLED, ReservationState.RELEASED)
    charged = reservation.charged
    assert all(r == charged for r in results if r is not None)
    assert await balance_of(user.id) == 100 - charged
    assert await CreditEntry.filter(task_id="race-task", reason=CreditReason.RELEASE).count() == (
        1 if charged < 40 else 0
    )
    await assert_ledger_balanced()


async def test_many_reservations_each_raced(client: QuartClient, settings: Settings):
    [user] = await accounts(settings, 1, credits=1000)
    rids = [await reserve(user.id, 50) for _ in range(10)]
    calls = []
    for rid in rids:
        calls += [settle(rid, 30), settle(rid, 10), release(rid)]
    random.shuffle(calls)
    await asyncio.gather(*calls)
    finished = await CreditReservation.filter(id__in=rids).values_list("charged", flat=True)
    assert all(c in (0, 10, 30) for c in finished)
    assert await balance_of(user.id) == 1000 - sum(finished)
    await assert_ledger_balanced()


# Lock contention from another process or connection never surfaces as an error.


def sqlite_path(settings: Settings) -> str:
    return settings.database_url.removeprefix("sqlite://").split("?")[0]


def hold_sqlite_write_lock(path: str, user_id: int, held: threading.Event, seconds: float) -> None:
    """Another process's writer: holds the database write lock for `seconds`, then commits."""
    connection = sqlite3.connect(path, timeout=15, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE users SET nickname = nickname WHERE id = ?", (user_id,))
        held.set()
        time.sleep(seconds)
        connection.execute("COMMIT")
    finally:
        connection.close()


async def hold_postgres_row_lock(
    settings: Settings, user_id: int, held: asyncio.Event, seconds: float
):
    """Another process's writer: holds the user's row lock for `seconds`, then commits."""
    connection = await asyncpg.connect(
        settings.database_url.replace("postgres://", "postgresql://", 1)
    )
    try:
        async with connection.transaction():
            await connection.execute("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id)
            await connection.execute("SELECT id FROM credit_reservations FOR UPDATE")
            held.set()
            await asyncio.sleep(seconds)
    finally:
        await connection.close()


async def while_another_writer_holds_the_lock(
    settings: Settings, user_id: int, work, seconds: float = 0.4
):
    """Run `work()` while an outside connection holds a write lock; returns its result."""
    if POSTGRES:
        held = asyncio.Event()
        holder = asyncio.create_task(hold_postgres_row_lock(settings, user_id, held, seconds))
        await held.wait()
        result = await work()
        await holder
        return result
    held_flag = threading.Event()
    holder = asyncio.create_task(
        asyncio.to_thread(
            hold_sqlite_write_lock, sqlite_path(settings), user_id, held_flag, seconds
        )
    )
    await asyncio.to_thread(held_flag.wait)
    result = await work()
    await holder
    return result


async def test_reserve_waits_out_another_writer(client: QuartClient, settings: Settings):
    [user] = await accounts(settings, 1, credits=100)
    started = time.monotonic()
    rid = await while_another_writer_holds_the_lock(settings, user.id, lambda: reserve(user.id, 30))
    assert time.monotonic() - started >= 0.3
    assert (await CreditReservation.get(id=rid)).amount == 30
    assert await balance_of(user.id) == 70
    await assert_ledger_balanced()


async def test_settle_after_reading_survives_another_writer(
    client: QuartClient, settings: Settings
):
    """Settle reads before it writes: SQLite must wait for the writer, not fail "locked"."""
    [user] = await accounts(settings, 1, credits=100)
    rid = await reserve(user.id, 30)
    charged = await while_another_writer_holds_the_lock(settings, user.id, lambda: settle(rid, 12))
    assert charged == 12
    assert await balance_of(user.id) == 88
    await assert_ledger_balanced()


async def test_redeems_over_http_while_another_writer_holds_the_lock(
    client: QuartClient, settings: Settings
):
    users = await accounts(settings, 10)
    code = await RedeemCode.create(code="RACE-LOCKED-1", credits=4, max_uses=3)

    async def redeem_all():
        return await asyncio.gather(
            *(client.post(REDEEM, json={"code": code.code}, headers=u.headers) for u in users)
        )

    # Longer than the whole retry budget: contention is waited out, not retried away.
    started = time.monotonic()
    responses = await while_another_writer_holds_the_lock(
        settings, users[0].id, redeem_all, seconds=3.0
    )
    assert time.monotonic() - started >= 2.9
    assert sorted(r.status_code for r in responses) == [200] * 3 + [409] * 7
    await assert_ledger_balanced()


# The retry rule itself.


async def test_transient_errors_are_retried_and_others_are_not(client: QuartClient):
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise OperationalError(sqlite3.OperationalError("database is locked"))
        return "done"

    assert await credits.atomically(flaky) == "done"
    assert attempts == 3

    failures = 0

    async def broken() -> None:
        nonlocal failures
        failures += 1
        raise IntegrityError("UNIQUE constraint failed")

    with pytest.raises(IntegrityError):
        await credits.atomically(broken)
    assert failures == 1


def test_postgres_deadlocks_and_serialization_failures_are_transient():
    assert credits.is_transient(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))
    assert credits.is_transient(asyncpg.exceptions.SerializationError("could not serialize"))
    wrapped = OperationalError("wrapped")
    wrapped.__cause__ = asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
    assert credits.is_transient(wrapped)
    assert not credits.is_transient(asyncpg.exceptions.UniqueViolationError("duplicate key"))
    assert not credits.is_transient(ValueError("database is fine"))
