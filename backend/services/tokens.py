"""Access tokens (JWT) and refresh tokens (opaque, stored hashed, rotated on use)."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from backend.errors import Unauthorized
from backend.models import RefreshToken, User
from backend.models.users import LoginKind
from backend.settings import Settings
from schemas.ids import is_user_id

ALGORITHM = "HS256"
# As `issue_access_token` writes it: no sign, no leading zeros, at most ten digits.
USER_ID_SUBJECT = re.compile(r"[1-9][0-9]{0,9}")


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def issue_access_token(user: User, settings: Settings) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user.id),
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(seconds=settings.access_token_ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)


def decode_access_token(token: str, settings: Settings) -> int:
    """Return the user id the token was issued to, or raise Unauthorized.

    A token must expire (one without `exp` would be valid forever, even signed by us),
    and its subject must be a user id as issued: plain ASCII digits within the id
    column's range (`str.isdigit` also accepts "²" and "٣", which `int` rejects or
    reads as another number).
    """
    try:
        claims = jwt.decode(
            token,
            settings.secret_key,
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
    return int(subject)


async def issue_token_pair(user: User, settings: Settings, kind: LoginKind) -> TokenPair:
    refresh = "rt_" + secrets.token_urlsafe(32)
    await RefreshToken.create(
        id=uuid.uuid4().hex,
        user=user,
        token_hash=sha256(refresh),
        kind=kind,
        expires_at=datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_seconds),
    )
    return TokenPair(
        access_token=issue_access_token(user, settings),
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
    return await issue_token_pair(stored.user, settings, stored.kind)


async def revoke_refresh_token(token: str) -> None:
    await revoke(await active_refresh_token(token))
