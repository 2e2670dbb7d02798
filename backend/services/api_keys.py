"""API keys: long-lived bearer credentials, stored only as a hash, shown once."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from backend.errors import NotFound
from backend.models import ApiKey, User
from backend.services.authentication import API_KEY_PREFIX
from backend.services.revocation import Revocation, RevocationKind, announce
from backend.services.tokens import sha256
from backend.settings import Settings

# Enough of the key to tell keys apart in a list, far too little to guess the rest.
VISIBLE_CHARS = 10


@dataclass(frozen=True)
class CreatedKey:
    record: ApiKey
    key: str


async def create(user: User, name: str) -> CreatedKey:
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    record = await ApiKey.create(
        id=uuid.uuid4().hex,
        user=user,
        name=name,
        prefix=key[:VISIBLE_CHARS],
        key_hash=sha256(key),
    )
    return CreatedKey(record=record, key=key)


async def list_active(user: User) -> list[ApiKey]:
    return await ApiKey.filter(user_id=user.id, revoked_at=None).order_by("created_at", "id")


async def revoke(user: User, key_id: str, *, redis: Redis, settings: Settings) -> None:
    """Revoke one of the caller's keys; anyone else's key id is indistinguishable from none.
    Connections open with the key are closed (backend/services/revocation.py)."""
    revoked = await ApiKey.filter(id=key_id, user_id=user.id, revoked_at=None).update(
        revoked_at=datetime.now(UTC)
    )
    if not revoked:
        raise NotFound(f"API key {key_id} not found")
    await announce(redis, settings, Revocation(RevocationKind.API_KEY, user.id, key_id))
