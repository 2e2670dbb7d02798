"""Revoking credentials at once: the logout deny-list and the revocation broadcast.

A request is authorized when it starts, but WebSockets and SSE streams stay open for
hours. Whatever ends a credential (an API key deleted, an account disabled, a logout)
writes its new state first (SQL, or the deny-list below) and then announces it on one
Redis pub/sub channel; every web process closes its open connections that use it
(backend/services/credential_watch.py). The state written first is what any later
request or socket command checks, so a lost announcement cannot re-open anything.

Logout: access tokens are JWTs checked without SQL, so a logged-out login's id (`sid`)
goes on a deny-list in Redis for as long as any of its access tokens can still be valid
(ACCESS_TOKEN_TTL_SECONDS); each JWT request checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis

from backend.constants import credential_revocations_channel, revoked_login_key
from backend.settings import Settings

# A second of margin over the access lifetime: a token issued just before the logout.
DENY_MARGIN_SECONDS = 5
NO_ID = "-"


class RevocationKind(StrEnum):
    USER = "user"  # the account was disabled: every credential of it
    API_KEY = "api_key"
    LOGIN = "login"  # a logout: the access tokens of that login


@dataclass(frozen=True)
class Revocation:
    kind: RevocationKind
    user_id: int
    credential_id: str | None = None

    def encode(self) -> str:
        return f"{self.kind.value} {self.user_id} {self.credential_id or NO_ID}"

    @classmethod
    def decode(cls, text: str) -> Revocation | None:
        """None for anything this version does not understand (ignored, never fatal)."""
        parts = text.split(" ")
        if len(parts) != 3 or not parts[1].isascii() or not parts[1].isdigit():
            return None
        try:
            kind = RevocationKind(parts[0])
        except ValueError:
            return None
        return cls(kind, int(parts[1]), None if parts[2] == NO_ID else parts[2])

    @property
    def reason(self) -> str:
        """What the client is told when its connection is closed for it."""
        if self.kind is RevocationKind.USER:
            return "This account is disabled"
        if self.kind is RevocationKind.API_KEY:
            return "Invalid or revoked API key"
        return "Logged out: log in again"


async def announce(redis: Redis, settings: Settings, revocation: Revocation) -> None:
    await redis.publish(credential_revocations_channel(settings.redis_prefix), revocation.encode())


async def revoke_login(redis: Redis, settings: Settings, user_id: int, login_id: str) -> None:
    """Refuse the login's access tokens from now on, and close its open connections."""
    ttl = settings.access_token_ttl_seconds + DENY_MARGIN_SECONDS
    await redis.set(revoked_login_key(settings.redis_prefix, login_id), b"1", ex=ttl)
    await announce(redis, settings, Revocation(RevocationKind.LOGIN, user_id, login_id))


async def login_revoked(redis: Redis, settings: Settings, login_id: str) -> bool:
    return bool(await redis.exists(revoked_login_key(settings.redis_prefix, login_id)))
