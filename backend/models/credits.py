"""The credit ledger: every change to a balance is one row here."""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class CreditReason(StrEnum):
    SIGNUP = "signup"
    REDEEM = "redeem"
    RESERVE = "reserve"
    RELEASE = "release"
    ADMIN = "admin"


class ReservationState(StrEnum):
    RESERVED = "reserved"
    SETTLED = "settled"
    RELEASED = "released"


class CreditEntry(Model):
    id = fields.BigIntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="credit_entries")
    delta = fields.BigIntField()
    reason = fields.CharEnumField(CreditReason, max_length=16)
    balance_after = fields.BigIntField()
    task_id = fields.CharField(max_length=32, null=True)
    code = fields.CharField(max_length=64, null=True)
    note = fields.CharField(max_length=255, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "credit_entries"
        # A user's ledger newest first, and its count (migration 0005).
        indexes = (("user_id", "id"),)


class CreditReservation(Model):
    """Credits held for a piece of work until it settles or releases, exactly once."""

    id = fields.CharField(max_length=32, primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="reservations")
    amount = fields.BigIntField()
    charged = fields.BigIntField(null=True)
    state = fields.CharEnumField(ReservationState, max_length=16, default=ReservationState.RESERVED)
    task_id = fields.CharField(max_length=32, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "credit_reservations"


class RedeemCode(Model):
    code = fields.CharField(max_length=64, primary_key=True)
    credits = fields.BigIntField()
    max_uses = fields.IntField(default=1)
    uses = fields.IntField(default=0)
    expires_at = fields.DatetimeField(null=True)
    created_by = fields.ForeignKeyField("models.User", related_name="codes_created", null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "redeem_codes"


class CodeRedemption(Model):
    id = fields.BigIntField(primary_key=True)
    code = fields.ForeignKeyField(
        "models.RedeemCode", related_name="redemptions", on_delete=fields.CASCADE
    )
    user = fields.ForeignKeyField("models.User", related_name="redemptions")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "code_redemptions"
        unique_together = (("code", "user"),)
