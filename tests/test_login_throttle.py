"""Password guessing is slowed: per account and address, and per address."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from quart import Quart
from quart.testing import QuartClient

from backend.app import create_app
from backend.errors import TooManyRequests, Unauthorized
from backend.services import login_throttle
from backend.settings import Settings
from tests.support.accounts import Account, register

TOKEN_URL = "/api/v1/session/oauth2/token"


async def attempt(client: QuartClient, username: str, password: str):
    return await client.post(TOKEN_URL, form={"username": username, "password": password})


async def test_account_is_refused_after_too_many_wrong_passwords(
    client: QuartClient, user: Account, other_user: Account, settings: Settings
) -> None:
    for _ in range(settings.login_max_failures):
        assert (await attempt(client, user.username, "wrong password")).status_code == 401
    # The right password no longer helps: a guesser learns nothing more.
    refused = await attempt(client, user.username, user.password)
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= settings.login_failure_window_seconds
    body = await refused.get_json()
    assert body["code"] == 429 and f"try again in {retry_after} s" in body["message"]
    # Another account from the same address is not affected.
    assert (await attempt(client, other_user.username, other_user.password)).status_code == 200


async def test_success_clears_the_count(client: QuartClient, settings: Settings) -> None:
    account = await register(client)
    for _ in range(2):
        for _ in range(settings.login_max_failures - 1):
            assert (await attempt(client, account.username, "nope nope nope")).status_code == 401
        assert (await attempt(client, account.username, account.password)).status_code == 200


async def test_unknown_usernames_count_too(client: QuartClient, settings: Settings) -> None:
    for _ in range(settings.login_max_failures):
        assert (await attempt(client, "nobody-at-all", "whatever123")).status_code == 401
    assert (await attempt(client, "nobody-at-all", "whatever123")).status_code == 429


async def test_one_address_trying_many_accounts_is_refused(
    client: QuartClient, redis: aioredis.Redis, settings: Settings
) -> None:
    strict = settings.model_copy(
        update={"login_max_failures_per_address": 3, "redis_prefix": "throttle-test"}
    )
    accounts = [await register(client) for _ in range(3)]
    for account in accounts:
        with pytest.raises(Unauthorized):
            await login_throttle.login_with_password(
                account.username, "wrong", "10.0.0.7", redis=redis, settings=strict
            )
    with pytest.raises(TooManyRequests) as refused:
        await login_throttle.login_with_password(
            accounts[0].username, accounts[0].password, "10.0.0.7", redis=redis, settings=strict
        )
    assert "from your address" in refused.value.message
    # Another address still logs in.
    user = await login_throttle.login_with_password(
        accounts[0].username, accounts[0].password, "10.0.0.8", redis=redis, settings=strict
    )
    assert user.username == accounts[0].username


async def test_behind_a_trusted_proxy_the_forwarded_address_counts(
    app: Quart, redis: aioredis.Redis, settings: Settings
) -> None:
    proxied = settings.model_copy(update={"trusted_proxy_hops": 1, "redis_prefix": "proxy-test"})
    # A second app on the session's database; only the throttle's Redis is its own.
    application = create_app(proxied)
    application.config["REDIS"] = redis
    client = application.test_client()
    account = await register(client)

    async def attempt_from(address: str, password: str) -> int:
        response = await client.post(
            TOKEN_URL,
            form={"username": account.username, "password": password},
            headers={"X-Forwarded-For": address},
        )
        return response.status_code

    for _ in range(proxied.login_max_failures):
        assert await attempt_from("203.0.113.5", "wrong password") == 401
    assert await attempt_from("203.0.113.5", account.password) == 429
    assert await attempt_from("198.51.100.9", account.password) == 200
