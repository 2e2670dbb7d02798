"""Resolve a bearer credential (JWT access token or API key) to an active user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from backend.errors import Unauthorized
from backend.models import ApiKey, User
from backend.models.lean_reads import live_api_key, user_by_id
from backend.services.revocation import login_revoked
from backend.services.tokens import decode_access_claims, sha256
from backend.settings import Settings

API_KEY_PREFIX = "sk-"
# Recording every use would cost a write per request; this resolution is plenty for "last used".
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Credential:
    """An authenticated credential: whose it is and what can end it. Long connections
    keep it to re-check it per command and to be closed when it ends
    (backend/services/credential_watch.py)."""

    user: User
    token: str
    api_key_id: str | None = None
    login_id: str | None = None
    # Epoch seconds; None for API keys, which do not expire.
    expires_at: float | None = None


async def api_key_for(key: str) -> ApiKey:
    api_key = await live_api_key(sha256(key))
    if api_key is None:
        raise Unauthorized("Invalid or revoked API key")
    now = datetime.now(UTC)
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        await ApiKey.filter(id=api_key.id).update(last_used_at=now)
    return api_key


async def authenticate_credential(token: str, settings: Settings, redis: Redis) -> Credential:
    """The credential's current state: 401 if it is invalid, revoked, expired, logged
    out, or its account is disabled or gone."""
    if token.startswith(API_KEY_PREFIX):
        api_key = await api_key_for(token)
        credential = Credential(api_key.user, token, api_key_id=api_key.id)
    else:
        claims = decode_access_claims(token, settings)
        if claims.login_id is not None and await login_revoked(redis, settings, claims.login_id):
            raise Unauthorized("Logged out: log in again")
        # Read on every request, so a disabled account is refused at once: the one
        # statement, built once (backend/models/lean_reads.py).
        user = await user_by_id(claims.user_id)
        if user is None:
            raise Unauthorized("Invalid access token: the user no longer exists")
        credential = Credential(user, token, login_id=claims.login_id, expires_at=claims.expires_at)
    if credential.user.disabled:
        raise Unauthorized("This account is disabled")
    return credential


async def authenticate(token: str, settings: Settings, redis: Redis) -> User:
    return (await authenticate_credential(token, settings, redis)).user
