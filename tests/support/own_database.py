"""Live processes on a database of the test's own (a private PostgreSQL, a SQLite file):
`migrate` it as `make run` does (`python -m backend migrate`, in a child, since the test
process's Tortoise serves the session's database), and `sign_in` over HTTP, since the
services' shortcuts (`create_account`) write to the session's database, not this one."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx

from backend.settings import Settings
from tests.support.live_server import ROOT, process_env

PASSWORD = "outage-password-123"


def migrate(settings: Settings) -> None:
    subprocess.run(
        [sys.executable, "-m", "backend", "migrate"],
        cwd=ROOT,
        env=process_env(settings),
        check=True,
        capture_output=True,
        timeout=120,
    )


async def sign_in(client: httpx.AsyncClient) -> dict[str, str]:
    """Register a new user and log in: the bearer header."""
    username = f"u{uuid.uuid4().hex[:10]}"
    created = await client.post("/api/v1/users", json={"username": username, "password": PASSWORD})
    assert created.status_code == 201, created.text
    token = await client.post(
        "/api/v1/session/oauth2/token", data={"username": username, "password": PASSWORD}
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}
