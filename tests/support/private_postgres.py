"""A PostgreSQL cluster of the test's own, to stop and start under live processes.

The suite's shared server (TEST_POSTGRES_URL) must stay up for everyone else, so an outage
test makes its own: `initdb` into a temporary directory, started with `pg_ctl` on a free
port (as the unprivileged service user when we are root: PostgreSQL refuses root), as
`scripts/services.sh ensure_postgres` does, and stopped for good at the end. `stop()` is a
real outage (fast shutdown: the server closes every connection and the port refuses),
`start()` brings the same data back on the same port. `private_services` gives a test
both a private PostgreSQL and a private Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backend.settings import Settings
from tests.support.live_server import free_port
from tests.support.own_database import migrate
from tests.support.private_redis import PrivateRedis

SERVICE_USER = os.environ.get("SLUICE_SERVICE_USER", "sluice")


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are (Debian keeps them off PATH), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class PrivatePostgres:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.directory = Path(tempfile.mkdtemp(prefix="sluice-pg-outage-"))
        self.port = free_port()
        self.root = os.geteuid() == 0
        if self.root:
            account = pwd.getpwnam(SERVICE_USER)
            os.chown(self.directory, account.pw_uid, account.pw_gid)

    @property
    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.root:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        result = subprocess.run(command, cwd="/", capture_output=True, text=True, timeout=90)
        if result.returncode != 0:
            log = self.directory / "postgres.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {result.stderr}{result.stdout}\n{tail}")

    def initdb(self) -> None:
        self.run(
            "initdb",
            f"--pgdata={self.directory / 'data'}",
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self.run(
            "pg_ctl",
            f"--pgdata={self.directory / 'data'}",
            f"--log={self.directory / 'postgres.log'}",
            "--wait",
            "--timeout=60",
            "start",
            f"--options={options}",
        )

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", f"--pgdata={self.directory / 'data'}", f"--mode={mode}", "stop")

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class PrivateServices:
    """A private PostgreSQL and Redis, and settings on them (the database migrated)."""

    postgres: PrivatePostgres
    redis: PrivateRedis
    settings: Settings


@asynccontextmanager
async def private_services(
    base: Settings, directory: Path, **overrides: Any
) -> AsyncIterator[PrivateServices]:
    """Both servers started (the test skips where PostgreSQL is not installed), `base` on
    them with `overrides`, removed at the end: what an outage test stops and starts."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (initdb not found)")
    postgres = PrivatePostgres(bindir)
    redis = PrivateRedis(directory)
    try:
        postgres.initdb()
        postgres.start()
        await redis.start()
        settings = base.model_copy(
            update={"database_url": postgres.admin_url, "redis_url": redis.url, **overrides}
        )
        await asyncio.to_thread(migrate, settings)
        yield PrivateServices(postgres, redis, settings)
    finally:
        redis.kill()
        postgres.remove()
