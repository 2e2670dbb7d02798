"""No process signs with a key anyone knows (backend/signing_key.py, backend/settings.py).

Before, `make run` signed tokens with the placeholder in settings.py, so anyone could
forge `{"sub": "1", "typ": "access"}` and act as the first administrator.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest

from backend.services.tokens import ALGORITHM
from backend.settings import PUBLIC_SECRET_KEY, Settings
from backend.signing_key import KEY_FILE_NAME, SigningKeyError, read_or_create, signing_key
from tests.support.accounts import create_account
from tests.support.live_server import ROOT, start_hypercorn

RACERS = 6


def bare_settings(data_dir: Path, **values: object) -> Settings:
    return Settings(data_dir=data_dir, _env_file=None, **values)  # type: ignore[arg-type]


def forged(key: str, subject: str = "1") -> str:
    now = datetime.now(UTC)
    claims = {"sub": subject, "typ": "access", "iat": now, "exp": now + timedelta(hours=1)}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


@pytest.mark.sqlite_only
def test_without_secret_key_a_private_key_is_generated_once(tmp_path: Path) -> None:
    key = signing_key(bare_settings(tmp_path))
    path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key.encode()) >= 32 and key != PUBLIC_SECRET_KEY
    assert path.read_text().strip() == key
    # Another DATA_DIR gets another key; the same DATA_DIR always the same one.
    assert signing_key(bare_settings(tmp_path / "other")) != key
    assert bare_settings(tmp_path).secret_key == ""


@pytest.mark.sqlite_only
def test_processes_started_together_agree_on_one_key(tmp_path: Path) -> None:
    """Several processes race to create the key in one DATA_DIR: all read the winner's."""
    code = (
        "from pathlib import Path; import sys; from backend.settings import Settings; "
        "from backend.signing_key import signing_key; "
        "print(signing_key(Settings(data_dir=Path(sys.argv[1]), _env_file=None)))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATA_DIR")}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "data")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(RACERS)
    ]
    keys = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert all(racer.returncode == 0 for racer in racers)
    assert len(keys) == 1 and keys == {(tmp_path / "data" / KEY_FILE_NAME).read_text().strip()}
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [KEY_FILE_NAME]


@pytest.mark.sqlite_only
def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    read_or_create(path)
    path.chmod(0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        read_or_create(path)
    path.chmod(0o600)
    for unusable in ("too-short", PUBLIC_SECRET_KEY):
        path.write_text(unusable + "\n")
        with pytest.raises(SigningKeyError, match="no usable key"):
            read_or_create(path)


@pytest.mark.sqlite_only
def test_a_set_secret_key_is_used_as_is(tmp_path: Path) -> None:
    key = "k" * 40
    assert signing_key(bare_settings(tmp_path, secret_key=key)) == key
    assert not (tmp_path / KEY_FILE_NAME).exists()


def start_line(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m backend migrate` with these settings (the first thing `make run` does)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "REPLICA"))}
    return subprocess.run(
        [sys.executable, "-m", "backend", "migrate"],
        cwd=ROOT,
        env={**base, "DATA_DIR": str(tmp_path), "DATABASE_URL": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SECRET_KEY": PUBLIC_SECRET_KEY}, "SECRET_KEY is the public placeholder"),
        ({"SECRET_KEY": "short-key"}, "SECRET_KEY has 9 bytes; use at least 32"),
        ({"REPLICA_MODE": "true"}, "SECRET_KEY must be set when REPLICA_MODE is on"),
    ],
)
def test_unsafe_keys_stop_start_up_with_one_line(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    result = start_line(tmp_path, **env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "short-key" not in result.stderr  # a secret is never printed, even a bad one


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "DATABASE_URL must name PostgreSQL when REPLICA_MODE is on"),
        ({"DATABASE_URL": "postgres://u:p@127.0.0.1:1/x"}, "SEARCH_STORE must be elasticsearch"),
        (
            {"DATABASE_URL": "postgres://u:p@127.0.0.1:1/x", "SEARCH_STORE": "elasticsearch"},
            "STORAGE_URL must be s3://bucket/prefix when REPLICA_MODE is on",
        ),
    ],
)
def test_replicas_with_a_key_refuse_state_on_their_own_disk(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    """A replica with its key still refuses SQLite, the embedded store and local files."""
    result = start_line(tmp_path, REPLICA_MODE="true", SECRET_KEY="r" * 48, **env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


@pytest.mark.sqlite_only
def test_make_runs_first_step_makes_the_key_or_stops_on_an_unsafe_file(tmp_path: Path) -> None:
    """`python -m backend migrate` (before `make run` starts its processes) makes the key;
    a key file others can read stops it with one line."""
    assert start_line(tmp_path).returncode == 0
    path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o640)
    result = start_line(tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "chmod 600" in lines[0], result.stderr


async def test_a_token_forged_with_the_old_default_is_refused_by_make_runs_server(
    live_settings: Settings, live_log_dir: Path, tmp_path: Path
) -> None:
    """A real server on the embedded defaults (no SECRET_KEY): the old placeholder signs
    nothing it accepts, while its own tokens work."""
    defaults = live_settings.model_copy(update={"secret_key": "", "data_dir": tmp_path})
    server = await start_hypercorn(defaults, live_log_dir)
    try:
        admin = await create_account(defaults, admin=True, password=False)
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for subject in ("1", str(admin.id)):
                token = forged(PUBLIC_SECRET_KEY, subject)
                response = await client.get("/api/v1/users", headers=bearer(token))
                assert response.status_code == 401, response.text
            own = await client.get("/api/v1/users", headers=bearer(admin.access_token))
            assert own.status_code == 200
    finally:
        server.server.stop()
    assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
