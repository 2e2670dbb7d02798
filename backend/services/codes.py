"""Redeem codes: administrators mint them, users trade them for credits.

A code is never redeemed more than `max_uses` times (a conditional UPDATE on
`uses < max_uses` admits each use) nor twice by one user (a unique row per user).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise import timezone
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from backend.errors import BadRequest, Conflict, Gone, NotFound
from backend.models import CodeRedemption, RedeemCode, User
from backend.models.credits import CreditReason
from backend.services import credits

# Upper case and digits without look-alikes (0/O, 1/I), in dash-separated groups.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
GROUPS = 3
GROUP_LENGTH = 4
GENERATE_ATTEMPTS = 5


@dataclass(frozen=True)
class Redemption:
    code: str
    credits: int
    balance: int


@dataclass(frozen=True)
class CodeUse:
    user_id: int
    username: str
    redeemed_at: datetime


@dataclass(frozen=True)
class CodeDetail:
    code: RedeemCode
    uses: list[CodeUse]


@dataclass(frozen=True)
class CodePage:
    codes: list[RedeemCode]
    total: int


def generate_code() -> str:
    """A readable random code such as `K7QX-M2PA-ZR9D` (60 bits)."""
    return "-".join(
        "".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS)
    )


def as_utc(moment: datetime) -> datetime:
    """Timestamps without an offset are taken to be UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def create_code(
    creator: User,
    *,
    credits_each: int,
    max_uses: int,
    expires_at: datetime | None = None,
    code: str | None = None,
) -> RedeemCode:
    if credits_each <= 0:
        raise BadRequest("credits must be a positive number of credits per redemption")
    if max_uses < 1:
        raise BadRequest("max_uses must be at least 1")
    if expires_at is not None:
        expires_at = as_utc(expires_at)
        if expires_at <= timezone.now():
            raise BadRequest("expires_at is in the past: give a future time, or omit it")
    fields = {
        "credits": credits_each,
        "max_uses": max_uses,
        "expires_at": expires_at,
        "created_by_id": creator.id,
    }
    if code is not None:
        try:
            return await RedeemCode.create(code=code, **fields)
        except IntegrityError as error:
            raise Conflict(f"Code '{code}' already exists: choose another or omit it") from error
    for _ in range(GENERATE_ATTEMPTS):
        try:
            return await RedeemCode.create(code=generate_code(), **fields)
        except IntegrityError:
            continue
    raise Conflict("Could not generate an unused code; try again")


async def get_code(code: str) -> CodeDetail:
    found = await RedeemCode.get_or_none(code=code)
    if found is None:
        raise NotFound(f"Code '{code}' not found")
    rows = (
        await CodeRedemption.filter(code_id=code)
        .order_by("created_at", "id")
        .select_related("user")
    )
    return CodeDetail(
        code=found,
        uses=[CodeUse(row.user_id, row.user.username, row.created_at) for row in rows],
    )


async def list_codes(*, offset: int, limit: int) -> CodePage:
    codes = RedeemCode.all()
    return CodePage(
        codes=await codes.order_by("-created_at", "code").offset(offset).limit(limit),
        total=await codes.count(),
    )


async def delete_code(code: str) -> None:
    """Withdraw a code; credits already granted stay granted (the ledger keeps the code)."""
    if not await RedeemCode.filter(code=code).delete():
        raise NotFound(f"Code '{code}' not found")


async def redeem(user_id: int, code: str) -> Redemption:
    """Add a code's credits to the user's balance: 404 unknown, 410 expired, 409 used."""
    code = code.strip()
    already = f"You have already redeemed code '{code}'; each user can redeem a code once"

    async def run() -> Redemption:
        found = await RedeemCode.get_or_none(code=code)
        if found is None:
            raise NotFound(f"Code '{code}' does not exist or was withdrawn; check it for typos")
        if found.expires_at is not None and found.expires_at <= timezone.now():
            raise Gone(f"Code '{code}' expired at {found.expires_at.isoformat()}")
        if await CodeRedemption.filter(code_id=code, user_id=user_id).exists():
            raise Conflict(already)
        admitted = await RedeemCode.filter(code=code, uses__lt=F("max_uses")).update(
            uses=F("uses") + 1
        )
        if not admitted:
            raise Conflict(f"Code '{code}' has been used up ({found.max_uses} of {found.max_uses})")
        try:
            await CodeRedemption.create(code_id=code, user_id=user_id)
        except IntegrityError as error:
            raise Conflict(already) from error
        balance = await credits.post_entry(user_id, found.credits, CreditReason.REDEEM, code=code)
        if balance is None:
            raise NotFound(f"User {user_id} not found")
        return Redemption(code=code, credits=found.credits, balance=balance)

    return await credits.atomically(run)
