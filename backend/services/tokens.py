"""Access tokens (JWT) and refresh tokens (opaque, stored hashed, rotated on use).

Every token pair belongs to a login: its id (`sid`) is in each access token and in the
refresh token's text (`rt_<sid>.<secret>`), and stays the same through rotations, so a
logout can revoke every access token of that login (backend/services/revocation.py)
without a lookup on each request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt

from backend.errors import Unauthorized
from backend.models import RefreshToken, User
from backend.models.users import LoginKind
from backend.settings import Settings
from backend.signing_key import signing_key
from schemas.ids import is_user_id

ALGORITHM = "HS256"
# As `issue_access_token` writes it: no sign, no leading zeros, at most ten digits.
USER_ID_SUBJECT = re.compile(r"[1-9][0-9]{0,9}")
# A login id as `new_login_id` writes it.
LOGIN_ID = re.compile(r"[0-9a-f]{32}")
REFRESH_PREFIX = "rt_"
# Access tokens whose signature and claims were checked, remembered per process.
VERIFIED_TOKENS = 4096


@dataclass(frozen=True)
class AccessClaims:
    """What a valid access token says: whose it is, which login, until when (epoch s)."""

    user_id: int
    login_id: str | None
    expires_at: float


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_login_id() -> str:
    return uuid.uuid4().hex


def login_id_of(refresh_token: str) -> str | None:
    """The login a refresh token belongs to (None for tokens from before logins had ids).
    Only meaningful once the token was found stored: the text is the client's."""
    sid, dot, _ = refresh_token.removeprefix(REFRESH_PREFIX).partition(".")
    return sid if dot and LOGIN_ID.fullmatch(sid) else None


def issue_access_token(user: User, settings: Settings, login_id: str | None = None) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user.id),
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(seconds=settings.access_token_ttl_seconds),
        "jti": uuid.uuid4().hex,
        "sid": login_id or new_login_id(),
    }
    return jwt.encode(claims, signing_key(settings), algorithm=ALGORITHM)


def decode_access_token(token: str, settings: Settings) -> int:
    """Return the user id the token was issued to, or raise Unauthorized."""
    return decode_access_claims(token, settings).user_id


def decode_access_claims(token: str, settings: Settings) -> AccessClaims:
    """Return what the token says, or raise Unauthorized.

    A token must expire (one without `exp` would be valid forever, even signed by us),
    and its subject must be a user id as issued: plain ASCII digits within the id
    column's range (`str.isdigit` also accepts "²" and "٣", which `int` rejects or
    reads as another number).

    A token's signature and claims are checked once (`verified_claims`), not on every
    request it makes; its expiry is checked every time. Whether its login or account
    has ended since is the caller's check, per request (`authenticate_credential`).
    """
    claims = verified_claims(token, signing_key(settings))
    if claims.expires_at <= time.time():
        raise Unauthorized("Access token expired: refresh it or log in again")
    return claims


@lru_cache(maxsize=VERIFIED_TOKENS)
def verified_claims(token: str, key: str | bytes) -> AccessClaims:
    """The claims of a token signed with `key` (a rotated key misses the cache); raises
    Unauthorized, and remembers nothing, for any token that is not valid now."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("Access token expired: refresh it or log in again") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("Invalid access token") from exc
    subject = claims["sub"]
    if claims.get("typ") != "access" or not isinstance(subject, str):
        raise Unauthorized("Invalid access token")
    if USER_ID_SUBJECT.fullmatch(subject) is None or not is_user_id(int(subject)):
        raise Unauthorized("Invalid access token")
    login_id = claims.get("sid")
    if login_id is not None and (not isinstance(login_id, str) or not LOGIN_ID.fullmatch(login_id)):
        raise Unauthorized("Invalid access token")
    return AccessClaims(int(subject), login_id, float(claims["exp"]))


async def issue_token_pair(
    user: User, settings: Settings, kind: LoginKind, login_id: str | None = None
) -> TokenPair:
    """A new pair of the login `login_id` (a new login when None)."""
    login_id = login_id or new_login_id()
    refresh = f"{REFRESH_PREFIX}{login_id}.{secrets.token_urlsafe(32)}"
    await RefreshToken.create(
        id=uuid.uuid4().hex,
        user=user,
        token_hash=sha256(refresh),
        kind=kind,
        expires_at=datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_seconds),
    )
    return TokenPair(
        access_token=issue_access_token(user, settings, login_id),
        refresh_token=refresh,
        expires_in=settings.access_token_ttl_seconds,
    )


async def active_refresh_token(token: str) -> RefreshToken:
    """The stored, unrevoked, unexpired refresh token, or Unauthorized."""
    stored = await RefreshToken.get_or_none(token_hash=sha256(token)).select_related("user")
    if stored is None or stored.revoked_at is not None:
        raise Unauthorized("Invalid or revoked refresh token: log in again")
    if stored.expires_at <= datetime.now(UTC):
        raise Unauthorized("Refresh token expired: log in again")
    return stored


async def revoke(stored: RefreshToken) -> None:
    """Revoke once: a concurrent second use of the same token loses and gets 401."""
    revoked = await RefreshToken.filter(id=stored.id, revoked_at=None).update(
        revoked_at=datetime.now(UTC)
    )
    if not revoked:
        raise Unauthorized("Invalid or revoked refresh token: log in again")


async def rotate_refresh_token(
    token: str, settings: Settings, kind: LoginKind | None = None
) -> TokenPair:
    """Exchange a refresh token for a new pair; the old one stops working."""
    stored = await active_refresh_token(token)
    if kind is not None and stored.kind != kind:
        raise Unauthorized(f"This refresh token was not issued by a {kind.value} login")
    if stored.user.disabled:
        raise Unauthorized("This account is disabled")
    await revoke(stored)
    return await issue_token_pair(stored.user, settings, stored.kind, login_id_of(token))


async def revoke_refresh_token(token: str) -> RefreshToken:
    """Revoke it; the caller revokes the login's access tokens (`login_id_of`)."""
    stored = await active_refresh_token(token)
    await revoke(stored)
    return stored
