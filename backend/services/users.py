"""Accounts: registration, passwords, profile and admin edits, admin bootstrap.

Argon2 is deliberately slow, so hashing runs in a thread: a login must not stall the
event loop that is relaying other users' token streams.
"""

from __future__ import annotations

import asyncio
import logging

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from backend.errors import BadRequest, Conflict, NotFound, Unauthorized
from backend.models import User
from backend.models.users import Level
from backend.services import credits
from backend.services.revocation import Revocation, RevocationKind, announce
from backend.settings import Settings
from schemas.users import AdminUserUpdate, ProfileUpdate

log = logging.getLogger("sluice.users")
hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return hasher.hash(password)


def verify_password(user: User, password: str) -> bool:
    if not user.password_hash:
        return False
    try:
        return hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def create_user(
    settings: Settings,
    username: str,
    password: str | None,
    *,
    level: Level = Level.USER,
    nickname: str = "",
    wechat_openid: str | None = None,
    wechat_unionid: str | None = None,
) -> User:
    """Create an account with its signup credits, in one transaction."""
    if await User.filter(username=username).exists():
        raise Conflict(f"Username '{username}' is taken: choose another")
    password_hash = await asyncio.to_thread(hash_password, password) if password else None
    try:
        async with in_transaction():
            user = await User.create(
                username=username,
                password_hash=password_hash,
                level=level,
                nickname=nickname or username,
                wechat_openid=wechat_openid,
                wechat_unionid=wechat_unionid,
            )
            await credits.grant_signup(user, settings.new_user_credits)
    except IntegrityError as exc:
        # Lost a race with a concurrent signup for the same name or WeChat account.
        raise Conflict(f"Username '{username}' is taken: choose another") from exc
    return user


async def ensure_admin(settings: Settings) -> User | None:
    """Create ADMIN_USERNAME with ADMIN_PASSWORD if that account does not exist yet."""
    if not (settings.admin_username and settings.admin_password):
        return None
    existing = await User.get_or_none(username=settings.admin_username)
    if existing is not None:
        return existing
    try:
        user = await create_user(
            settings, settings.admin_username, settings.admin_password, level=Level.ADMIN
        )
    except Conflict:
        return await User.get_or_none(username=settings.admin_username)
    log.info("created admin %s", user.username)
    return user


async def authenticate_password(username: str, password: str) -> User:
    """The account these credentials open; one message for every failure, so none leaks."""
    user = await User.get_or_none(username=username)
    if user is None:
        # Same cost as a real check: timing does not reveal whether the username exists.
        await asyncio.to_thread(hasher.hash, password)
        raise Unauthorized("Incorrect username or password")
    if not await asyncio.to_thread(verify_password, user, password):
        raise Unauthorized("Incorrect username or password")
    if user.disabled:
        raise Unauthorized("This account is disabled")
    return user


async def update_profile(user: User, changes: ProfileUpdate) -> User:
    """Apply the fields sent; a new password needs the current one when there is one."""
    sent = changes.model_fields_set
    if changes.nickname is not None:
        user.nickname = changes.nickname
    if "email" in sent:
        user.email = changes.email
    if changes.password is not None:
        current = changes.current_password or ""
        if user.password_hash and not await asyncio.to_thread(verify_password, user, current):
            raise BadRequest("current_password is missing or wrong: send your current password")
        user.password_hash = await asyncio.to_thread(hash_password, changes.password)
    await user.save()
    return user


async def get_user(user_id: int) -> User:
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found")
    return user


async def list_users(username: str | None, offset: int, limit: int) -> tuple[list[User], int]:
    query = User.all()
    if username:
        query = query.filter(username__icontains=username)
    total = await query.count()
    users = await query.order_by("id").offset(offset).limit(limit)
    return users, total


async def update_user(
    admin: User, user_id: int, changes: AdminUserUpdate, *, redis: Redis, settings: Settings
) -> User:
    """Admin edit of nickname, level and disabled; an admin cannot lock themself out.
    Disabling closes the account's open connections (backend/services/revocation.py)."""
    user = await get_user(user_id)
    demoted = changes.level is not None and changes.level != Level.ADMIN
    if user.id == admin.id and (changes.disabled or demoted):
        raise BadRequest("You cannot disable or demote your own account: ask another admin")
    if changes.nickname is not None:
        user.nickname = changes.nickname
    if changes.level is not None:
        user.level = Level(changes.level)
    if changes.disabled is not None:
        user.disabled = changes.disabled
    await user.save()
    if changes.disabled:
        await announce(redis, settings, Revocation(RevocationKind.USER, user.id))
    return user
