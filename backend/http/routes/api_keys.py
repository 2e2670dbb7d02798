"""The caller's API keys: create (the key is shown once), list, revoke."""

from __future__ import annotations

from quart import Blueprint, current_app
from quart_schema import validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.responses import ok
from backend.models import ApiKey
from backend.services import api_keys
from schemas.auth import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ApiKeyRevoked
from schemas.envelope import Envelope

blueprint = Blueprint("api_keys", __name__, url_prefix="/api/v1/users/me/api-keys")


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
    )


@blueprint.post("")
@authenticated
@validate_request(ApiKeyCreate)
@validate_response(Envelope[ApiKeyCreated], 201)
async def create_key(data: ApiKeyCreate):
    """Create a key for `Authorization: Bearer sk-...`; copy `key` now, it is never shown again."""
    created = await api_keys.create(current_user(), data.name)
    record = created.record
    return ok(
        ApiKeyCreated(
            id=record.id,
            name=record.name,
            prefix=record.prefix,
            key=created.key,
            created_at=record.created_at,
        ),
        201,
    )


@blueprint.get("")
@authenticated
@validate_response(Envelope[list[ApiKeyOut]])
async def list_keys():
    """The caller's active keys, oldest first, without the secrets."""
    return ok([key_out(key) for key in await api_keys.list_active(current_user())])


@blueprint.delete("/<id:key_id>")
@authenticated
@validate_response(Envelope[ApiKeyRevoked])
async def revoke_key(key_id: str):
    """Revoke a key at once; requests with it get 401 from now on."""
    await api_keys.revoke(
        current_user(),
        key_id,
        redis=current_app.config["REDIS"],
        settings=current_app.config["SETTINGS"],
    )
    return ok(ApiKeyRevoked(id=key_id))
