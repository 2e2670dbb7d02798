"""Throwaway Sluice pieces for a benchmark: a migrated database, a web process (and Redis
if needed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from backend.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def fake_upstream(tokens: int, tokens_per_second: float | None = None) -> AsyncIterator[str]:
    """tests.support.fake_openai in a process of its own, as a real upstream is (its CPU is
    not the benchmark's): its base URL. It may not listen yet: a caller's first request
    retries until it answers."""
    port = free_port()
    pacing = ("--tokens-per-second", str(tokens_per_second)) if tokens_per_second else ()
    fake = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.support.fake_openai", "--port", str(port)),
        *("--tokens", str(tokens), *pacing),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        fake.terminate()
        await fake.wait()


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        yield url
        return
    except redis.RedisError:
        pass
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()


def migrate(env: Mapping[str, str], tree: Path = ROOT) -> None:
    """`backend migrate` of `tree`'s code in a process of its own, as a deployment runs it:
    the schema a benchmark's database gets is the one that tree's processes expect."""
    subprocess.run(
        [sys.executable, "-m", "backend", "migrate"],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def migrated_database(database_url: str, **settings: Any) -> Iterator[Settings]:
    """Settings for a migrated database in a throwaway DATA_DIR (SQLite there when
    `database_url` is empty), for benchmarks that call Sluice's code in their own process;
    `settings` are further Settings fields."""
    with tempfile.TemporaryDirectory() as data_dir:
        migrate({**os.environ, "DATA_DIR": data_dir, "DATABASE_URL": database_url})
        yield Settings(data_dir=data_dir, database_url=database_url, _env_file=None, **settings)


def copy_without_indexes(path: Path, copy: Path, indexes: list[tuple[str, str]]) -> None:
    """`copy` is the SQLite database at `path` without the indexes named by (table, the
    column list as the index's SQL spells it): the schema before the migration that added
    them, with the same rows, for a bench to read old next to new."""
    shutil.copyfile(path, copy)
    db = sqlite3.connect(copy)
    for table, columns in indexes:
        (name,) = db.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name=? AND sql LIKE ?",
            [table, f"%{columns}%"],
        ).fetchone()
        db.execute(f'DROP INDEX "{name}"')
    db.commit()
    db.close()


@dataclass
class Service:
    base_url: str
    port: int
    env: dict[str, str]


@contextlib.contextmanager
def web_service(extra_env: dict[str, str] | None = None, workers: int = 1) -> Iterator[Service]:
    with tempfile.TemporaryDirectory() as data_dir, redis_url() as url:
        port = free_port()
        env = {
            **os.environ,
            "DATA_DIR": data_dir,
            "REDIS_URL": url,
            "REDIS_PREFIX": f"bench-{port}",
            "SECRET_KEY": "bench-secret-key-long-enough-for-hs256",
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        migrate(env)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hypercorn",
                "backend.asgi:app",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
            ],
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/readyz").status_code == 200:
                        break
                time.sleep(0.1)
            else:
                raise RuntimeError("service did not become ready")
            yield Service(base, port, env)
        finally:
            proc.terminate()
            proc.wait(10)
