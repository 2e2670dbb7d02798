"""Holds, balances and the ledger invariants every credit test asserts."""

from __future__ import annotations

from tortoise.functions import Count, Sum

from backend.models import CodeRedemption, CreditEntry, CreditReservation, RedeemCode, User
from backend.models.credits import ReservationState
from backend.services import credits


async def reserve(user_id: int, amount: int, *, task_id: str | None = None) -> str:
    """A hold in a transaction of its own (the service records a task in the same one)."""
    return await credits.atomically(lambda: credits.hold(user_id, amount, task_id=task_id))


async def settle(reservation_id: str, actual: int) -> int:
    """Charge min(actual, held) in a transaction of its own, as ending a task does."""
    return await credits.atomically(
        lambda: credits.close_reservation(reservation_id, ReservationState.SETTLED, actual)
    )


async def release(reservation_id: str) -> None:
    """Refund the whole hold in a transaction of its own, as failing a task does."""
    await credits.atomically(
        lambda: credits.close_reservation(reservation_id, ReservationState.RELEASED, 0)
    )


async def balance_of(user_id: int) -> int:
    return await User.filter(id=user_id).first().values_list("credits", flat=True)


async def assert_ledger_balanced() -> None:
    """No credit lost or created, no balance negative, no code over-redeemed.

    For every user the balance equals the sum of ledger deltas and each ledger row's
    `balance_after` is the running sum at that row; every code's `uses` counts its
    redemptions and stays within `max_uses`; every finished reservation charged at most
    what it held, and a held reservation charged nothing yet.
    """
    sums = dict(
        await CreditEntry.all()
        .group_by("user_id")
        .annotate(total=Sum("delta"))
        .values_list("user_id", "total")
    )
    for user_id, balance in await User.all().values_list("id", "credits"):
        assert balance >= 0, f"user {user_id} has a negative balance {balance}"
        assert balance == (sums.get(user_id) or 0), (
            f"user {user_id}: balance {balance} != ledger sum {sums.get(user_id)}"
        )
        running = 0
        for delta, after in (
            await CreditEntry.filter(user_id=user_id)
            .order_by("id")
            .values_list("delta", "balance_after")
        ):
            running += delta
            assert after == running, f"user {user_id}: balance_after {after} != running {running}"
    redeemed = dict(
        await CodeRedemption.all()
        .group_by("code_id")
        .annotate(n=Count("id"))
        .values_list("code_id", "n")
    )
    for code, uses, max_uses in await RedeemCode.all().values_list("code", "uses", "max_uses"):
        assert uses <= max_uses, f"code {code} used {uses} > {max_uses} times"
        assert uses == redeemed.get(code, 0), (
            f"code {code}: uses {uses} != rows {redeemed.get(code)}"
        )
    for rid, state, amount, charged in await CreditReservation.all().values_list(
        "id", "state", "amount", "charged"
    ):
        if state == ReservationState.RESERVED:
            assert charged is None, f"reservation {rid} is held yet charged {charged}"
        else:
            assert charged is not None and 0 <= charged <= amount, f"reservation {rid}: {charged}"
