"""Test accounts: registered and logged in through the public API, or made directly
through the services when a test is not about identity."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from quart.testing import QuartClient

from backend.models.users import Level
from backend.services.credits import adjust
from backend.services.tokens import issue_access_token
from backend.services.users import create_user
from backend.settings import Settings

PASSWORD = "correct horse battery"


@dataclass
class Account:
    id: int
    username: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def login(client: QuartClient, username: str, password: str) -> Account:
    response = await client.post(
        "/api/v1/session/oauth2/token", form={"username": username, "password": password}
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    tokens = await response.get_json()
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200, await me.get_data(as_text=True)
    user = (await me.get_json())["data"]
    return Account(user["id"], username, password, tokens["access_token"], tokens["refresh_token"])


async def register(client: QuartClient, username: str | None = None) -> Account:
    username = username or f"u{uuid.uuid4().hex[:10]}"
    response = await client.post("/api/v1/users", json={"username": username, "password": PASSWORD})
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await login(client, username, PASSWORD)


async def create_account(
    settings: Settings, *, admin: bool = False, credits: int | None = None, password: bool = True
) -> Account:
    """An account made directly through the services, with an access token for `settings`.

    `password=False` skips hashing one (argon2 is slow on purpose) for tests that never
    log in. `credits` sets the starting balance by posting the difference to the ledger,
    so the ledger still explains the balance.
    """
    username = f"u{uuid.uuid4().hex[:12]}"
    secret = PASSWORD if password else None
    user = await create_user(settings, username, secret, level=Level.ADMIN if admin else Level.USER)
    if credits is not None and credits != user.credits:
        await adjust(user.id, credits - user.credits, "test setup")
    return Account(user.id, username, secret or "", issue_access_token(user, settings), "")
