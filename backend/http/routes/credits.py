"""A user's credits: balance and ledger, redeeming codes; admin adjustments."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.documented_errors import document_errors
from backend.http.responses import ok
from backend.models import CreditEntry
from backend.services import codes, credits
from schemas.common import Pagination
from schemas.credits import (
    AdjustIn,
    AdjustOut,
    CreditEntryOut,
    CreditsOut,
    RedeemIn,
    RedeemOut,
)
from schemas.envelope import Envelope

blueprint = Blueprint("credits", __name__, url_prefix="/api/v1/users")


def entry_out(entry: CreditEntry) -> CreditEntryOut:
    return CreditEntryOut(
        id=entry.id,
        delta=entry.delta,
        reason=entry.reason,
        balance_after=entry.balance_after,
        task_id=entry.task_id,
        code=entry.code,
        note=entry.note,
        created_at=entry.created_at,
    )


async def credits_out(user_id: int, query: Pagination) -> CreditsOut:
    page = await credits.ledger(user_id, offset=query.offset, limit=query.page_size)
    return CreditsOut(
        balance=page.balance,
        items=[entry_out(entry) for entry in page.entries],
        total=page.total,
        page=query.page,
        page_size=query.page_size,
    )


@blueprint.get("/me/credits")
@authenticated
@validate_querystring(Pagination)
@validate_response(Envelope[CreditsOut])
async def my_credits(query_args: Pagination):
    """The balance and the ledger of every change to it, newest first."""
    return ok(await credits_out(current_user().id, query_args))


@blueprint.post("/me/credits")
@document_errors(404, 409, 410)
@authenticated
@validate_request(RedeemIn)
@validate_response(Envelope[RedeemOut])
async def redeem_code(data: RedeemIn):
    """Redeem a code: 404 unknown or withdrawn, 410 expired, 409 used up or already yours."""
    redemption = await codes.redeem(current_user().id, data.code)
    return ok(
        RedeemOut(code=redemption.code, credits=redemption.credits, balance=redemption.balance)
    )


@blueprint.get("/<user_id:user_id>/credits")
@authenticated(admin=True)
@validate_querystring(Pagination)
@validate_response(Envelope[CreditsOut])
async def user_credits(user_id: int, query_args: Pagination):
    """Any user's balance and ledger (admin), for answering "where did my credits go"."""
    return ok(await credits_out(user_id, query_args))


@blueprint.post("/<user_id:user_id>/credits")
@document_errors(409)
@authenticated(admin=True)
@validate_request(AdjustIn)
@validate_response(Envelope[AdjustOut])
async def adjust_credits(user_id: int, data: AdjustIn):
    """Grant or deduct credits (admin); a deduction never takes the balance below zero."""
    balance = await credits.adjust(user_id, data.delta, data.reason)
    return ok(AdjustOut(user_id=user_id, delta=data.delta, balance=balance))
