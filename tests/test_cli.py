"""`python -m backend` operator commands."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

from backend.models import User
from backend.services.users import verify_password
from backend.settings import Settings
from tests.test_workers import worker_env


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend", *args],
        env=worker_env(settings, "cli"),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_create_admin_makes_a_level_2_account(app, settings: Settings) -> None:
    username = f"admin{uuid.uuid4().hex[:8]}"
    result = await asyncio.to_thread(
        run_cli, settings, "create-admin", "--username", username, "--password", "pw-123456789"
    )
    assert result.returncode == 0, result.stderr
    user = await User.get(username=username)
    assert user.is_admin
    assert verify_password(user, "pw-123456789")


async def test_create_admin_refuses_a_taken_username(app, settings: Settings) -> None:
    result = await asyncio.to_thread(
        run_cli,
        settings,
        "create-admin",
        "--username",
        settings.admin_username,
        "--password",
        "whatever-123",
    )
    assert result.returncode != 0
    assert "taken" in result.stderr


async def test_migrate_is_idempotent(app, settings: Settings) -> None:
    for _ in range(2):
        result = await asyncio.to_thread(run_cli, settings, "migrate")
        assert result.returncode == 0, result.stderr
