"""Credit balances, their ledger, and reservations that hold credits while work runs.

Every balance change is one conditional UPDATE plus one ledger row in the same
transaction, so the balance never goes negative and always equals the sum of its
ledger deltas. Reservations finish exactly once: a conditional UPDATE on
`state = 'reserved'` picks the single winner among racing settles and releases.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tortoise import timezone
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from backend.errors import BadRequest, Conflict, NotFound, PaymentRequired
from backend.models import CreditEntry, CreditReservation, User
from backend.models.credits import CreditReason, ReservationState
from backend.models.returning import update_returning_values
from backend.sqlite_engine import takes_write_lock

T = TypeVar("T")

# SQLite reports lock contention between processes as "database is locked"/"busy";
# PostgreSQL as serialization failure (40001) or deadlock (40P01). All are safe to retry
# because the whole transaction rolled back.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
TRANSIENT_MESSAGES = ("database is locked", "database table is locked", "database is busy")
# BEGIN IMMEDIATE semantics for SQLite: a transaction that reads before it writes fails
# at once with "database is locked" if another process writes meanwhile, while one that
# writes first waits in SQLite's busy timeout. The service's connections begin
# IMMEDIATE (backend/sqlite_engine.py); on any other SQLite connection this no-op write
# goes first.
SQLITE_TAKE_WRITE_LOCK = "UPDATE credit_reservations SET id = id WHERE 0"
TRANSACTION_ATTEMPTS = 8
RETRY_BASE_SECONDS = 0.02


@dataclass(frozen=True)
class LedgerPage:
    balance: int
    entries: list[CreditEntry]
    total: int


def is_transient(error: BaseException) -> bool:
    """True for lock contention errors, looking through Tortoise's exception wrapping."""
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, "sqlstate", None) in TRANSIENT_SQLSTATES:
            return True
        if any(text in str(seen).lower() for text in TRANSIENT_MESSAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def atomically(operation: Callable[[], Awaitable[T]]) -> T:
    """Run `operation` in one transaction, rerunning it whole on transient lock errors."""

    async def transaction() -> T:
        async with in_transaction() as connection:
            if connection.capabilities.dialect == "sqlite" and not takes_write_lock(connection):
                await connection.execute_query(SQLITE_TAKE_WRITE_LOCK)
            return await operation()

    return await retried(transaction)


async def retried(transaction: Callable[[], Awaitable[T]]) -> T:
    """`transaction()` (one transaction of its own, e.g. `backend.models.answer_writes`),
    rerun whole on transient lock errors."""
    attempt = 1
    while True:
        try:
            return await transaction()
        except Exception as error:
            if attempt >= TRANSACTION_ATTEMPTS or not is_transient(error):
                raise
        await asyncio.sleep(RETRY_BASE_SECONDS * 2**attempt)
        attempt += 1


async def post_entry(
    user_id: int,
    delta: int,
    reason: CreditReason,
    *,
    task_id: str | None = None,
    code: str | None = None,
    note: str | None = None,
) -> int | None:
    """Move `delta` credits and record it; None when a debit exceeds the balance.

    Must run inside a transaction. A zero delta changes nothing and writes no row. The
    new balance comes back from the UPDATE itself (`update_returning_values`).
    """
    if not delta:
        return await User.filter(id=user_id).first().values_list("credits", flat=True)
    balances = User.filter(id=user_id)
    if delta < 0:
        balances = balances.filter(credits__gte=-delta)
    moved = await update_returning_values(balances.update(credits=F("credits") + delta), "credits")
    if not moved:
        return None
    balance = int(moved[0]["credits"])
    await CreditEntry.create(
        user_id=user_id,
        delta=delta,
        reason=reason,
        balance_after=balance,
        task_id=task_id,
        code=code,
        note=note,
    )
    return balance


async def current_balance(user_id: int) -> int:
    balance = await User.filter(id=user_id).first().values_list("credits", flat=True)
    if balance is None:
        raise NotFound(f"User {user_id} not found")
    return balance


async def grant_signup(user: User, amount: int) -> None:
    """Starting balance; the caller's transaction makes it atomic with the account."""
    if amount <= 0:
        return
    user.credits = amount
    await user.save(update_fields=["credits"])
    await CreditEntry.create(
        user=user, delta=amount, reason=CreditReason.SIGNUP, balance_after=amount
    )


async def ledger(user_id: int, *, offset: int, limit: int) -> LedgerPage:
    """The balance and one page of its ledger, newest first."""
    entries = CreditEntry.filter(user_id=user_id)
    return LedgerPage(
        balance=await current_balance(user_id),
        entries=await entries.order_by("-id").offset(offset).limit(limit),
        total=await entries.count(),
    )


async def adjust(user_id: int, delta: int, note: str | None = None) -> int:
    """An administrator's correction; refused when it would take the balance below zero."""
    if delta == 0:
        raise BadRequest("delta must not be 0: send a positive amount to grant, negative to deduct")

    async def run() -> int:
        balance = await post_entry(user_id, delta, CreditReason.ADMIN, note=note)
        if balance is None:
            have = await current_balance(user_id)
            raise Conflict(
                f"Cannot deduct {-delta} credits: the balance is {have} and may not go "
                f"below zero; deduct at most {have}"
            )
        return balance

    return await atomically(run)


async def hold(user_id: int, amount: int, *, task_id: str | None = None) -> str:
    """Hold `amount` credits for work about to run; 402 when the balance can't cover it.

    Must run inside a transaction (`atomically`), which may record the work too.
    """
    if amount < 0:
        raise ValueError("a reservation amount cannot be negative")
    # Holding nothing (a free model) moves no credits and reads no balance.
    if amount and await post_entry(user_id, -amount, CreditReason.RESERVE, task_id=task_id) is None:
        raise await not_enough(user_id, amount)
    reservation = await CreditReservation.create(
        id=uuid.uuid4().hex, user_id=user_id, amount=amount, task_id=task_id
    )
    return reservation.id


async def not_enough(user_id: int, amount: int) -> PaymentRequired:
    """The 402 of a hold the balance can't cover, naming the balance."""
    have = await current_balance(user_id)
    return PaymentRequired(
        f"Not enough credits: this request needs {amount} and your balance is "
        f"{have}; redeem a code or ask an administrator for credits"
    )


async def close_reservation(reservation_id: str, state: ReservationState, wanted: int) -> int:
    """Move a held reservation to `state` charging `wanted` (capped), exactly once.

    The loser of a race, or a repeat call, changes nothing and gets what was charged.
    Must run inside a transaction (`atomically`), which may hold other writes too.
    """
    if wanted < 0:
        raise ValueError("a charge cannot be negative")
    # The usual case, a charge within the hold, in one statement: the winning UPDATE
    # returns what the refund needs.
    finished = await update_returning_values(
        CreditReservation.filter(
            id=reservation_id, state=ReservationState.RESERVED, amount__gte=wanted
        ).update(state=state, charged=wanted, finished_at=timezone.now()),
        "amount",
        "user_id",
        "task_id",
    )
    if finished:
        row = finished[0]
        if refund := int(row["amount"]) - wanted:
            await post_entry(row["user_id"], refund, CreditReason.RELEASE, task_id=row["task_id"])
        return wanted
    # Not held any more (the loser of a race, a repeat call), missing, or a charge above
    # the hold (capped).
    reservation = await CreditReservation.get_or_none(id=reservation_id)
    if reservation is None:
        raise NotFound(f"Reservation {reservation_id} not found")
    charged = min(wanted, reservation.amount)
    won = await CreditReservation.filter(id=reservation_id, state=ReservationState.RESERVED).update(
        state=state, charged=charged, finished_at=timezone.now()
    )
    if not won:
        settled = await CreditReservation.get(id=reservation_id)
        return settled.charged or 0
    if refund := reservation.amount - charged:  # nothing to refund: no balance to read
        await post_entry(
            reservation.user_id, refund, CreditReason.RELEASE, task_id=reservation.task_id
        )
    return charged
