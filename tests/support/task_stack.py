"""A private live stack for task lifecycle tests: Hypercorn + arq chat workers + fake upstreams.

Private (own Redis prefix, own workers, own SQL database: tests/support/stack_database.py),
so a test may SIGKILL its worker without disturbing anyone else's stack, and no other
stack's reaper fails its tasks. A test module gets one with the `stack` fixture, or with
`stack_fixture(...)` for one with its own settings.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart

from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.fake_openai import fake_openai_server
from tests.support.live_server import (
    LiveServer,
    ServerProcess,
    delete_prefix,
    start_chat_worker,
    start_hypercorn,
)
from tests.support.stack_database import stack_database
from tests.support.task_models import with_models


@dataclass
class TaskStack:
    settings: Settings
    server: LiveServer
    log_dir: Path
    workers: list[ServerProcess] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def client(self, account: Account, **kwargs) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url, headers=account.headers, timeout=30, **kwargs
        )

    async def start_worker(self) -> ServerProcess:
        worker = await start_chat_worker(self.settings, self.log_dir)
        self.workers.append(worker)
        return worker

    def kill(self, worker: ServerProcess) -> None:
        """SIGKILL, as an OOM killer or a lost host would: no cleanup runs."""
        worker.signal(signal.SIGKILL)
        worker.process.wait(10)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.server.server.stop()


@asynccontextmanager
async def task_stack(
    base: Settings,
    log_dir: Path,
    *,
    slow_tokens: int = 400,
    database_options: str = "",
    **overrides: Any,
) -> AsyncIterator[TaskStack]:
    """Fast fake (20 tokens at once) and slow fake (`slow_tokens` at 20/s) behind the models;
    the processes' DATABASE_URL is the stack's own with `database_options` (`?busy_timeout=`)."""
    if "database_url" in overrides:  # a database the caller made for it (private PostgreSQL)
        base = base.model_copy(update={"database_url": overrides.pop("database_url")})
    async with (
        stack_database(base, log_dir) as own,
        fake_openai_server(tokens=20) as fast,
        fake_openai_server(tokens=slow_tokens, tokens_per_second=20) as slow,
    ):
        settings = with_models(own, fast.base_url, slow.base_url).model_copy(
            update={
                "database_url": own.database_url + database_options,
                "redis_prefix": f"life-{uuid.uuid4().hex[:8]}",
                "data_dir": log_dir,
                "admin_username": "",
                "admin_password": "",
                "log_level": "WARNING",
                "sse_heartbeat_seconds": 1.0,
                "task_heartbeat_ttl_seconds": 2,
                "task_reap_interval_seconds": 1,
                **overrides,
            }
        )
        server = await start_hypercorn(settings, log_dir)
        stack = TaskStack(settings, server, log_dir)
        try:
            await stack.start_worker()
            yield stack
        finally:
            stack.stop()
            await delete_prefix(settings.redis_url, settings.redis_prefix)


def stack_fixture(name: str, **options: Any) -> Any:
    """A module's `stack` fixture: a private `TaskStack` made by `task_stack(..., **options)`,
    started once for the module. Assign it to that name: `stack = stack_fixture("drain")`."""

    @pytest.fixture(scope="module", name="stack")
    async def stack_of_module(
        app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
    ) -> AsyncIterator[TaskStack]:
        async with task_stack(settings, tmp_path_factory.mktemp(name), **options) as running:
            yield running

    return stack_of_module


@pytest.fixture(scope="module")
async def stack(
    app: Quart,
    settings: Settings,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TaskStack]:
    """One private stack per test module (`app` has migrated the database)."""
    log_dir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    async with task_stack(settings, log_dir) as running:
        yield running
