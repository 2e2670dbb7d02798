"""Resolve a bearer credential (JWT access token or API key) to an active user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend.errors import Unauthorized
from backend.models import ApiKey, User
from backend.services.tokens import decode_access_token, sha256
from backend.settings import Settings

API_KEY_PREFIX = "sk-"
# Recording every use would cost a write per request; this resolution is plenty for "last used".
LAST_USED_RESOLUTION = timedelta(minutes=1)


async def user_for_api_key(key: str) -> User:
    api_key = await ApiKey.get_or_none(key_hash=sha256(key), revoked_at=None).select_related("user")
    if api_key is None:
        raise Unauthorized("Invalid or revoked API key")
    now = datetime.now(UTC)
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        await ApiKey.filter(id=api_key.id).update(last_used_at=now)
    return api_key.user


async def authenticate(credential: str, settings: Settings) -> User:
    if credential.startswith(API_KEY_PREFIX):
        user = await user_for_api_key(credential)
    else:
        user = await User.get_or_none(id=decode_access_token(credential, settings))
        if user is None:
            raise Unauthorized("Invalid access token: the user no longer exists")
    if user.disabled:
        raise Unauthorized("This account is disabled")
    return user
