"""Redeem codes, administered: mint, list, inspect (with who redeemed), withdraw."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.documented_errors import document_errors
from backend.http.responses import ok
from backend.models import RedeemCode
from backend.services import codes
from schemas.common import Pagination
from schemas.credits import (
    CodeCreate,
    CodeDeleted,
    CodeDetailOut,
    CodeOut,
    CodePageOut,
    CodeUseOut,
)
from schemas.envelope import Envelope

blueprint = Blueprint("codes", __name__, url_prefix="/api/v1/codes")


def code_out(code: RedeemCode) -> CodeOut:
    return CodeOut(
        code=code.code,
        credits=code.credits,
        max_uses=code.max_uses,
        uses=code.uses,
        expires_at=code.expires_at,
        created_at=code.created_at,
    )


@blueprint.post("")
@document_errors(409)
@authenticated(admin=True)
@validate_request(CodeCreate)
@validate_response(Envelope[CodeOut], 201)
async def create_code(data: CodeCreate):
    """Mint a code worth `credits` for up to `max_uses` users; a random one if `code` is absent."""
    code = await codes.create_code(
        current_user(),
        credits_each=data.credits,
        max_uses=data.max_uses,
        expires_at=data.expires_at,
        code=data.code,
    )
    return ok(code_out(code), 201)


@blueprint.get("")
@authenticated(admin=True)
@validate_querystring(Pagination)
@validate_response(Envelope[CodePageOut])
async def list_codes(query_args: Pagination):
    """All codes, newest first."""
    page = await codes.list_codes(offset=query_args.offset, limit=query_args.page_size)
    return ok(
        CodePageOut(
            items=[code_out(code) for code in page.codes],
            total=page.total,
            page=query_args.page,
            page_size=query_args.page_size,
        )
    )


@blueprint.get("/<code:code>")
@authenticated(admin=True)
@validate_response(Envelope[CodeDetailOut])
async def get_code(code: str):
    """One code with who redeemed it and when."""
    detail = await codes.get_code(code)
    return ok(
        CodeDetailOut(
            **code_out(detail.code).model_dump(),
            redemptions=[
                CodeUseOut(user_id=use.user_id, username=use.username, redeemed_at=use.redeemed_at)
                for use in detail.uses
            ],
        )
    )


@blueprint.delete("/<code:code>")
@authenticated(admin=True)
@validate_response(Envelope[CodeDeleted])
async def delete_code(code: str):
    """Withdraw a code so it can no longer be redeemed; granted credits stay."""
    await codes.delete_code(code)
    return ok(CodeDeleted(code=code))
