"""A redis-server of the test's own, on one port and one directory across restarts, to
kill under live processes (append-only, so its keys survive a restart)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis

from tests.support.live_server import free_port


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def launch(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        flags = ["--bind", "127.0.0.1", "--appendonly", "yes", "--save", ""]
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--dir", str(self.directory), *flags],
            stdout=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        self.launch()
        client = aioredis.from_url(self.url)
        try:
            for _ in range(100):
                try:
                    await client.ping()
                    return
                except (OSError, aioredis.RedisError):
                    await asyncio.sleep(0.1)
            raise RuntimeError("the private redis-server did not start")
        finally:
            await client.aclose()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@asynccontextmanager
async def running_private_redis(directory: Path) -> AsyncIterator[PrivateRedis]:
    """A started `PrivateRedis` in `directory` (made if need be), killed on the way out
    whatever the test left it in: running, stopped by a kill, or paused (SIGKILL ends a
    SIGSTOPped process too)."""
    server = PrivateRedis(directory)
    await server.start()
    try:
        yield server
    finally:
        server.kill()
