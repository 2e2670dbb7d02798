"""The real stack over sockets: Hypercorn serving `backend.asgi:app` and an arq chat worker,
each in its own process, configured only through environment variables.

They share the test session's SQL database and Redis DB (so tests can create rows and
append stream events directly) under a Redis prefix unique to the run. Everything is
started once per session, on demand, and stopped and cleaned at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from quart import Quart

from backend.models import Assistant, ChatSession
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.fake_openai import FakeOpenAIServer, fake_openai_server
from tests.support.task_models import CHEAP, with_models

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 60.0
FAST_TOKENS = 30
STOP_TIMEOUT_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Settings the test process sets for itself, not for the processes it serves.
IN_PROCESS_ONLY = frozenset({"gc_young_threshold"})


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as the environment variable pydantic-settings reads it from."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None or name in IN_PROCESS_ONLY:
            continue
        env[name.upper()] = value if isinstance(value, str) else json.dumps(value)
    return env


def process_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}


@dataclass
class ServerProcess:
    """A child process started in its own session, so its workers stop with it."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_SECONDS)


def spawn(name: str, args: list[str], settings: Settings, log_dir: Path) -> ServerProcess:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=process_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServerProcess(name, process, log_path)


@dataclass
class LiveServer:
    """A Hypercorn serving the app on a free port."""

    port: int
    server: ServerProcess
    settings: Settings

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"


async def wait_ready(server: ServerProcess, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited early:\n{server.log_tail()}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    server.stop()
    raise RuntimeError(
        f"{server.name} not ready after {START_TIMEOUT_SECONDS}s:\n{server.log_tail()}"
    )


async def start_hypercorn(
    settings: Settings, log_dir: Path, *, workers: int = 1, port: int | None = None
) -> LiveServer:
    port = port or free_port()
    args = [sys.executable, "-m", "hypercorn", "backend.asgi:app", "--bind", f"127.0.0.1:{port}"]
    if workers > 1:
        args += ["--workers", str(workers)]
    server = spawn(f"hypercorn-{port}", args, settings, log_dir)
    await wait_ready(server, f"http://127.0.0.1:{port}/readyz")
    return LiveServer(port, server, settings)


async def start_chat_worker(settings: Settings, log_dir: Path) -> ServerProcess:
    """An arq chat worker; ready once its health-check key appears in Redis."""
    from workers.chat import WorkerSettings

    worker = spawn(
        f"chat-worker-{uuid.uuid4().hex[:6]}",
        [sys.executable, "-m", "workers", "chat"],
        settings,
        log_dir,
    )
    health_key = WorkerSettings.health_check_key.replace(
        WorkerSettings.queue_name, f"{settings.redis_prefix}:queue:chat"
    )
    redis = aioredis.from_url(settings.redis_url)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not await redis.exists(health_key):
            if worker.process.poll() is not None:
                raise RuntimeError(f"chat worker exited early:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                worker.stop()
                raise RuntimeError(f"chat worker not ready:\n{worker.log_tail()}")
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()
    return worker


async def delete_prefix(redis_url: str, prefix: str) -> None:
    redis = aioredis.from_url(redis_url)
    try:
        async for key in redis.scan_iter(f"{prefix}:*", count=1000):
            await redis.delete(key)
    finally:
        await redis.aclose()


async def create_chat_session(account: Account, model: str = CHEAP) -> ChatSession:
    """An assistant on `model` and a session in it, owned by `account`."""
    assistant = await Assistant.create(
        owner_id=account.id, name="live", llm={"model_name": model, "max_tokens": 1024}
    )
    return await ChatSession.create(assistant=assistant, user_id=account.id)


@pytest.fixture(scope="session")
def live_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live-logs")


@dataclass
class Upstreams:
    """Fake OpenAI-compatible upstreams the live processes' models point at."""

    fast: FakeOpenAIServer
    slow: FakeOpenAIServer


@pytest.fixture(scope="session")
async def live_upstreams() -> AsyncIterator[Upstreams]:
    """`fast` answers FAST_TOKENS tokens at once-ish; `slow` streams for about ten seconds."""
    async with (
        fake_openai_server(tokens=FAST_TOKENS, tokens_per_second=500) as fast,
        fake_openai_server(tokens=400, tokens_per_second=40) as slow,
    ):
        yield Upstreams(fast, slow)


@pytest.fixture(scope="session")
async def live_settings(
    app: Quart,
    settings: Settings,
    live_upstreams: Upstreams,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Settings]:
    """The settings every live process gets; depends on `app`, which has migrated the DB.

    Models are those of `tests.support.task_models` (`cheap-text` by default, `slow-text`
    on the slow upstream).
    """
    live = with_models(settings, live_upstreams.fast.base_url, live_upstreams.slow.base_url)
    live = live.model_copy(
        update={
            "redis_prefix": f"live-{uuid.uuid4().hex[:8]}",
            "data_dir": tmp_path_factory.mktemp("live-data"),
            "admin_username": "",
            "admin_password": "",
            "sse_heartbeat_seconds": 1.0,
            "stream_lease_wait_seconds": 2.0,
            "ws_auth_timeout_seconds": 1.0,
            "log_level": "WARNING",
        }
    )
    yield live
    await delete_prefix(live.redis_url, live.redis_prefix)


@pytest.fixture(scope="session")
async def live_server(live_settings: Settings, live_log_dir: Path) -> AsyncIterator[LiveServer]:
    server = await start_hypercorn(live_settings, live_log_dir)
    yield server
    server.server.stop()


@pytest.fixture(scope="session")
async def live_server_two_workers(
    live_settings: Settings, live_log_dir: Path
) -> AsyncIterator[LiveServer]:
    """Hypercorn `--workers 2`: two web processes behind one port."""
    server = await start_hypercorn(live_settings, live_log_dir, workers=2)
    yield server
    server.server.stop()


@pytest.fixture(scope="session")
async def chat_worker(live_settings: Settings, live_log_dir: Path) -> AsyncIterator[ServerProcess]:
    worker = await start_chat_worker(live_settings, live_log_dir)
    yield worker
    worker.stop()


@pytest.fixture
async def live_user(live_settings: Settings) -> Account:
    return await create_account(live_settings)


@pytest.fixture
async def live_other_user(live_settings: Settings) -> Account:
    return await create_account(live_settings)


@pytest.fixture
def live_processes(live_server: LiveServer) -> Iterator[LiveServer]:
    """Fails a test whose server died under it, with the server's log."""
    yield live_server
    assert live_server.server.process.poll() is None, live_server.server.log_tail()


@pytest.fixture
async def disposable_chat_worker(
    live_settings: Settings, live_log_dir: Path
) -> AsyncIterator[ServerProcess]:
    """A chat worker of the test's own, for tests that kill it (`.signal(SIGKILL)`)."""
    worker = await start_chat_worker(live_settings, live_log_dir)
    yield worker
    worker.stop()
