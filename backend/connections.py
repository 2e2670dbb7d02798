"""Redis connections shared by web and workers."""

from __future__ import annotations

from arq.connections import ArqRedis, RedisSettings, create_pool

from backend.settings import Settings


def redis_settings(settings: Settings) -> RedisSettings:
    return RedisSettings.from_dsn(settings.redis_url)


async def open_redis(settings: Settings) -> ArqRedis:
    """An arq pool: a redis-py asyncio client that can also enqueue jobs."""
    return await create_pool(redis_settings(settings))
