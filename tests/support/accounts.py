"""Test accounts: registered and logged in through the public API, or made directly
through the services when a test is not about identity."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from quart.testing import QuartClient

from backend.models.users import Level
from backend.services.tokens import issue_access_token
from backend.services.users import create_user
from backend.settings import Settings


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
    password = "correct horse battery"
    response = await client.post("/api/v1/users", json={"username": username, "password": password})
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await login(client, username, password)


async def create_account(settings: Settings, *, admin: bool = False) -> Account:
    """An account made directly through the services, with an access token for `settings`."""
    username = f"live{uuid.uuid4().hex[:10]}"
    password = "correct horse battery"
    user = await create_user(
        settings, username, password, level=Level.ADMIN if admin else Level.USER
    )
    return Account(user.id, username, password, issue_access_token(user, settings), "")
