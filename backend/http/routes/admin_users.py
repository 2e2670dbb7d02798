"""Administering accounts (level 2): list, inspect, edit, disable."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app
from quart_schema import validate_querystring, validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.documented_errors import document_errors
from backend.http.responses import ok
from backend.http.routes.users import user_out
from backend.services import users
from schemas.envelope import Envelope
from schemas.users import AdminUserUpdate, UserOut, UserPage, UserQuery

blueprint = Blueprint("admin_users", __name__, url_prefix="/api/v1/users")


def services() -> dict[str, Any]:
    return {"redis": current_app.config["REDIS"], "settings": current_app.config["SETTINGS"]}


@blueprint.get("")
@authenticated(admin=True)
@validate_querystring(UserQuery)
@validate_response(Envelope[UserPage])
async def list_users(query_args: UserQuery):
    """Accounts by id, optionally those whose username contains `username`."""
    found, total = await users.list_users(
        query_args.username, query_args.offset, query_args.page_size
    )
    return ok(
        UserPage(
            items=[user_out(user) for user in found],
            total=total,
            page=query_args.page,
            page_size=query_args.page_size,
        )
    )


@blueprint.get("/<user_id:user_id>")
@authenticated(admin=True)
@validate_response(Envelope[UserOut])
async def get_user(user_id: int):
    """One account."""
    return ok(user_out(await users.get_user(user_id)))


@blueprint.patch("/<user_id:user_id>")
@authenticated(admin=True)
@validate_request(AdminUserUpdate)
@validate_response(Envelope[UserOut])
async def update_user(user_id: int, data: AdminUserUpdate):
    """Set nickname, level (0 user, 2 admin) or disabled; credits go through the credits API."""
    return ok(user_out(await users.update_user(current_user(), user_id, data, **services())))


@blueprint.post("/<user_id:user_id>/disable")
@document_errors(400)
@authenticated(admin=True)
@validate_response(Envelope[UserOut])
async def disable_user(user_id: int):
    """Disable an account: its tokens and API keys stop working on the next request."""
    changes = AdminUserUpdate(disabled=True)
    return ok(user_out(await users.update_user(current_user(), user_id, changes, **services())))
