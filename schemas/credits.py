"""Credits on the wire: balances, the ledger, redeem codes and admin adjustments."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from backend.models.credits import CreditReason
from schemas.common import RequestBody

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{3,63}$"


class CreditEntryOut(BaseModel):
    id: int
    delta: int
    reason: CreditReason
    balance_after: int
    task_id: str | None
    code: str | None
    note: str | None
    created_at: datetime


class CreditsOut(BaseModel):
    """The balance with one page of the ledger, newest first."""

    balance: int
    items: list[CreditEntryOut]
    total: int
    page: int
    page_size: int


class RedeemIn(RequestBody):
    code: str = Field(min_length=1, max_length=64, examples=["K7QX-M2PA-ZR9D"])


class RedeemOut(BaseModel):
    code: str
    credits: int = Field(description="Credits this redemption added")
    balance: int = Field(description="The balance after redeeming")


class AdjustIn(RequestBody):
    """A positive delta grants credits, a negative one deducts (never below zero)."""

    delta: int = Field(ge=-(10**12), le=10**12)
    reason: str | None = Field(None, max_length=255, description="Kept on the ledger row")

    @field_validator("delta")
    @classmethod
    def not_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("must not be 0: positive grants credits, negative deducts")
        return delta


class AdjustOut(BaseModel):
    user_id: int
    delta: int
    balance: int


class CodeCreate(RequestBody):
    credits: int = Field(gt=0, le=10**12, description="Credits granted per redemption")
    max_uses: int = Field(1, ge=1, le=10**9, description="How many users may redeem it")
    expires_at: datetime | None = Field(None, description="Future time; no offset means UTC")
    code: str | None = Field(
        None, pattern=CODE_PATTERN, description="Your own code; a readable random one if absent"
    )


class CodeOut(BaseModel):
    code: str
    credits: int
    max_uses: int
    uses: int
    expires_at: datetime | None
    created_at: datetime


class CodeUseOut(BaseModel):
    user_id: int
    username: str
    redeemed_at: datetime


class CodeDetailOut(CodeOut):
    redemptions: list[CodeUseOut]


class CodePageOut(BaseModel):
    items: list[CodeOut]
    total: int
    page: int
    page_size: int


class CodeDeleted(BaseModel):
    code: str
    deleted: bool = True
