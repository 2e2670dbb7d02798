"""Registration and the caller's own profile and avatar."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, request
from quart_schema import (
    DataSource,
    document_request,
    document_response,
    validate_request,
    validate_response,
)

from backend.http.auth import authenticated, current_user
from backend.http.body_limits import avatar_file, body_limit
from backend.http.documented_errors import document_errors
from backend.http.openapi import JpegImage
from backend.http.responses import ok
from backend.models import User
from backend.services import avatars, users
from backend.settings import Settings
from schemas.envelope import Envelope
from schemas.users import AvatarUpload, ProfileUpdate, UserCreate, UserOut

blueprint = Blueprint("users", __name__, url_prefix="/api/v1/users")


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        nickname=user.nickname,
        email=user.email,
        level=user.level,
        disabled=user.disabled,
        credits=user.credits,
        has_avatar=user.avatar_updated_at is not None,
        created_at=user.created_at,
    )


@blueprint.post("")
@document_errors(409)
@validate_request(UserCreate)
@validate_response(Envelope[UserOut], 201)
async def register(data: UserCreate):
    """Create an account (409 if the username is taken); log in with the OAuth2 token route."""
    user = await users.create_user(settings(), data.username, data.password)
    return ok(user_out(user), 201)


@blueprint.get("/me")
@authenticated
@validate_response(Envelope[UserOut])
async def me():
    """The caller's account."""
    return ok(user_out(current_user()))


@blueprint.patch("/me")
@authenticated
@validate_request(ProfileUpdate)
@validate_response(Envelope[UserOut])
async def update_me(data: ProfileUpdate):
    """Change nickname, email or password (a new password needs `current_password`)."""
    return ok(user_out(await users.update_profile(current_user(), data)))


@blueprint.put("/me/avatar")
@document_errors(415)
@body_limit(avatar_file)
@authenticated
@document_request(AvatarUpload, source=DataSource.FORM_MULTIPART)
@validate_response(Envelope[UserOut])
async def put_avatar():
    """Upload a JPEG, PNG, WebP or GIF (raw body or multipart `file`); stored as 128x128 JPEG."""
    data = await avatars.read_upload(request, settings().avatar_max_bytes)
    user = await avatars.set_avatar(current_user(), data, settings())
    return ok(user_out(user))


@blueprint.get("/me/avatar")
@document_errors(404)
@authenticated
@document_response(JpegImage)
async def get_avatar():
    """The caller's avatar as image/jpeg; 404 until one is uploaded."""
    image = await avatars.read_avatar(current_user(), settings())
    return Response(image, content_type="image/jpeg", headers={"Cache-Control": "private"})
