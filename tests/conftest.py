"""Shared fixtures: a real SQL database (SQLite, or PostgreSQL with TEST_DATABASE=postgres),
a real Redis (own DB index, flushed before and after), and the app under test.

Environment knobs:
- TEST_DATABASE: `sqlite` (default) or `postgres`.
- TEST_POSTGRES_URL: admin DSN used to create a throwaway database (default local `test`).
- TEST_REDIS_URL: Redis server/DB reserved for tests (default redis://127.0.0.1:6379/13).
- ELASTICSEARCH_URL: the Elasticsearch node for the search-store tests (`make test` starts a
  private one); without it they are skipped, with SLUICE_ES_UNAVAILABLE as the reason.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis, RedisSettings, create_pool
from quart import Quart
from quart.testing import QuartClient

from backend.app import create_app
from backend.settings import Settings
from tests.support.accounts import Account, create_account, register
from tests.support.stack_database import session_database

pytest_plugins = ["tests.support.live_server", "tests.support.task_stack"]

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with session_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
async def redis_url() -> AsyncIterator[str]:
    client = aioredis.from_url(TEST_REDIS_URL)
    await client.flushdb()
    yield TEST_REDIS_URL
    await client.flushdb()
    await client.aclose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the test Redis (the app has its own)."""
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def arq_pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    """An arq pool on the test Redis, for tests that drive a QueueWorker by hand."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    yield pool
    await pool.aclose()


@pytest.fixture(scope="session")
def elasticsearch_url() -> str:
    url = os.environ.get("ELASTICSEARCH_URL")
    if not url:
        reason = os.environ.get("SLUICE_ES_UNAVAILABLE", "ELASTICSEARCH_URL is not set")
        pytest.skip(f"no Elasticsearch node: {reason}")
    return url


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def settings(data_dir: Path, database_url: str, redis_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix="sluice-test",
        # Many tests log in from one address; the per-address limit has its own test.
        login_max_failures_per_address=1_000_000,
        # A stopped worker drains its answers in progress this long (production: 30 s);
        # the drain has its own test (test_worker_drain.py).
        worker_drain_seconds=2,
        secret_key="test-secret-key-that-is-long-enough-for-hs256",
        admin_username="root",
        admin_password="root-password-123",
        new_user_credits=100,
        log_json=False,
        log_level="WARNING",
        # Not in the test process itself: a full collection per app start would cost the
        # suite minutes. Processes the tests serve keep the product's default
        # (live_server.settings_env leaves it out); test_garbage_collector covers it.
        gc_young_threshold=0,
        _env_file=None,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Quart]:
    application = create_app(settings)
    async with application.test_app():
        yield application


@pytest.fixture
def client(app: Quart) -> QuartClient:
    return app.test_client()


@pytest.fixture
async def user(client: QuartClient) -> Account:
    return await register(client)


@pytest.fixture
async def other_user(client: QuartClient) -> Account:
    return await register(client)


@pytest.fixture
async def admin(client: QuartClient, settings: Settings) -> Account:
    from tests.support.accounts import login

    return await login(client, settings.admin_username, settings.admin_password)


@pytest.fixture
async def owner(app: Quart, settings: Settings) -> Account:
    """A user made through the services (no HTTP round trip), owning what a test creates."""
    return await create_account(settings)


@pytest.fixture
async def stranger(app: Quart, settings: Settings) -> Account:
    """Another user, who must not see the owner's things."""
    return await create_account(settings)


@pytest.fixture
async def root(app: Quart, settings: Settings) -> Account:
    return await create_account(settings, admin=True)
