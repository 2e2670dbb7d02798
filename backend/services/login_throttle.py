"""Slowing down password guessing.

Failed password logins are counted in Redis per account-and-address and per address,
over a fixed window. Past either limit, logins from that address are refused with 429
and Retry-After until the window ends, even with the right password, so a guesser
learns nothing. Counting per account *and* address means a stranger cannot lock a
user out from elsewhere; the per-address limit stops one address from trying many
accounts. A successful login clears its account-and-address count.
"""

from __future__ import annotations

from redis.asyncio import Redis

from backend.constants import login_failures_key
from backend.errors import TooManyRequests, Unauthorized
from backend.models import User
from backend.services.users import authenticate_password
from backend.settings import Settings


def keys(settings: Settings, username: str, address: str) -> tuple[str, str]:
    prefix = settings.redis_prefix
    return (
        login_failures_key(prefix, f"account:{username.lower()}:{address}"),
        login_failures_key(prefix, f"address:{address}"),
    )


async def refuse_if_throttled(
    redis: Redis, settings: Settings, username: str, address: str
) -> None:
    account_key, address_key = keys(settings, username, address)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(account_key).ttl(account_key).get(address_key).ttl(address_key)
        account_count, account_ttl, address_count, address_ttl = await pipe.execute()
    limits = (
        (account_count, account_ttl, settings.login_max_failures, "for this account"),
        (address_count, address_ttl, settings.login_max_failures_per_address, "from your address"),
    )
    for count, ttl, limit, where in limits:
        if count is not None and int(count) >= limit:
            wait = max(int(ttl), 1)
            raise TooManyRequests(
                f"Too many failed logins {where}; try again in {wait} s",
                retry_after=wait,
            )


async def record_failure(redis: Redis, settings: Settings, username: str, address: str) -> None:
    """Count the failure; a count's first failure starts its window (Redis 6 lacks
    EXPIRE NX, hence INCR then TTL)."""
    counted = keys(settings, username, address)
    async with redis.pipeline(transaction=False) as pipe:
        for key in counted:
            pipe.incr(key).ttl(key)
        replies = await pipe.execute()
    fresh = [key for key, ttl in zip(counted, replies[1::2], strict=True) if ttl < 0]
    if fresh:
        async with redis.pipeline(transaction=False) as pipe:
            for key in fresh:
                pipe.expire(key, settings.login_failure_window_seconds)
            await pipe.execute()


async def login_with_password(
    username: str, password: str, address: str, *, redis: Redis, settings: Settings
) -> User:
    """`authenticate_password` behind the throttle: 429 once there were too many failures."""
    await refuse_if_throttled(redis, settings, username, address)
    try:
        user = await authenticate_password(username, password)
    except Unauthorized:
        await record_failure(redis, settings, username, address)
        raise
    await redis.delete(keys(settings, username, address)[0])
    return user
