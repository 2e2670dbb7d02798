"""A private live stack for the knowledge tests: Hypercorn + arq ingest workers + a fake
OpenAI-compatible embedding upstream.

Private (own Redis prefix, DATA_DIR, search store, workers and SQL database:
tests/support/stack_database.py), so a test may SIGKILL its ingest worker without
disturbing anyone, and no other stack's sweeper takes its documents. The embedding
model is the fake's (`fake-embed@openai`, 8 dimensions, a hashed bag of words: texts
sharing words are close), so tests do not wait on the local model;
`stack.embeddings.delay` slows each embedding request down, for tests that stop or kill
a worker mid-document.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from backend.search.embedded import EmbeddedSearchStore
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.fake_embeddings import FakeEmbeddings, FakeEmbeddingServer
from tests.support.knowledge import MULTIPART, multipart
from tests.support.live_server import (
    START_TIMEOUT_SECONDS,
    LiveServer,
    ServerProcess,
    delete_prefix,
    spawn,
    start_hypercorn,
)
from tests.support.stack_database import stack_database

FAKE_MODEL = "fake-embed@openai"
# A model whose upstream always answers 500.
BROKEN_MODEL = "broken-embed@openai"
TERMINAL_RUNS = ("DONE", "FAIL", "CANCEL")


class SlowEmbeddings(FakeEmbeddings):
    """The fake embeddings, each request answered after `delay` seconds."""

    delay: float = 0.0

    async def __call__(self, request: Any, exchange: Any) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        await super().__call__(request, exchange)


async def start_ingest_worker(settings: Settings, log_dir: Path) -> ServerProcess:
    """An arq ingest worker; ready once its health-check key appears in Redis."""
    worker = spawn(
        f"ingest-worker-{uuid.uuid4().hex[:6]}",
        [sys.executable, "-m", "workers", "ingest"],
        settings,
        log_dir,
    )
    health_key = f"{settings.redis_prefix}:queue:ingest:health-check"
    redis = aioredis.from_url(settings.redis_url)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not await redis.exists(health_key):
            if worker.process.poll() is not None:
                raise RuntimeError(f"ingest worker exited early:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                worker.stop()
                raise RuntimeError(f"ingest worker not ready:\n{worker.log_tail()}")
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    return worker


@dataclass
class IngestStack:
    settings: Settings
    server: LiveServer
    log_dir: Path
    embeddings: SlowEmbeddings
    upstream: FakeEmbeddingServer
    workers: list[ServerProcess] = field(default_factory=list)

    @property
    def embedding_requests(self) -> int:
        """Requests the fake embedding upstream has received so far."""
        return len(self.upstream.stats.requests)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def client(self, account: Account) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers=account.headers, timeout=30)

    async def start_worker(self) -> ServerProcess:
        worker = await start_ingest_worker(self.settings, self.log_dir)
        self.workers.append(worker)
        return worker

    def kill(self, worker: ServerProcess) -> None:
        """SIGKILL the worker's whole process group (its parser children too), as an OOM
        killer or a lost host would: no cleanup runs."""
        worker.signal(signal.SIGKILL)
        worker.process.wait(10)

    def store(self) -> EmbeddedSearchStore:
        """The search store the stack's processes share (close it after use)."""
        return EmbeddedSearchStore(self.settings.search_db_file)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.server.server.stop()


def embedding_settings(base_url: str) -> dict[str, Any]:
    entries = [
        {
            "id": model,
            "provider": "openai",
            "upstream": upstream,
            "dimension": 8,
            "base_url": base_url,
            "api_key": "sk-fake",
        }
        for model, upstream in ((FAKE_MODEL, "fake-embed"), (BROKEN_MODEL, "fail-500"))
    ]
    return {"embedding_models": json.dumps(entries), "default_embedding_model": FAKE_MODEL}


@asynccontextmanager
async def ingest_stack(
    base: Settings, log_dir: Path, *, workers: int = 1, web_workers: int = 1, **overrides: Any
) -> AsyncIterator[IngestStack]:
    if "database_url" in overrides:  # a database the caller made for it (private PostgreSQL)
        base = base.model_copy(update={"database_url": overrides.pop("database_url")})
    async with (
        stack_database(base, log_dir) as own,
        ingest_stack_on(own, log_dir, workers, web_workers, overrides) as stack,
    ):
        yield stack


@asynccontextmanager
async def ingest_stack_on(
    base: Settings, log_dir: Path, workers: int, web_workers: int, overrides: dict[str, Any]
) -> AsyncIterator[IngestStack]:
    """`ingest_stack` on `base`'s database as it is."""
    embeddings = SlowEmbeddings()
    upstream = FakeEmbeddingServer(embeddings)
    await upstream.start()
    settings = base.model_copy(
        update={
            "redis_prefix": f"ingest-{uuid.uuid4().hex[:8]}",
            "data_dir": log_dir,
            "admin_username": "",
            "admin_password": "",
            "log_level": "WARNING",
            "sse_heartbeat_seconds": 1.0,
            "embedding_batch_size": 4,
            "ingest_cancel_poll_seconds": 0.2,
            "feed_progress_interval_seconds": 0.2,
            **embedding_settings(upstream.openai_base_url),
            **overrides,
        }
    )
    server = await start_hypercorn(settings, log_dir, workers=web_workers)
    stack = IngestStack(settings, server, log_dir, embeddings, upstream)
    try:
        for _ in range(workers):
            await stack.start_worker()
        yield stack
    finally:
        stack.stop()
        await upstream.close()
        await delete_prefix(settings.redis_url, settings.redis_prefix)


async def wait_for_run(
    client: httpx.AsyncClient,
    dataset_id: str,
    document_id: str,
    runs: tuple[str, ...] = TERMINAL_RUNS,
    within: float = 60.0,
    progress_above: float | None = None,
) -> dict[str, Any]:
    """Poll the document (REST) until its run is one of `runs` (and, if given, its
    progress is above `progress_above`), for at most `within` seconds; the document as
    listed."""
    deadline = time.monotonic() + within
    while True:
        response = await client.get(
            f"/api/v1/datasets/{dataset_id}/documents", params={"id": document_id}
        )
        assert response.status_code == 200, response.text
        document = response.json()["data"]["docs"][0]
        if document["run"] in runs and (
            progress_above is None or document["progress"] > progress_above
        ):
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"document still {document['run']}: {document}")
        await asyncio.sleep(0.1)


async def parsed_documents(
    client: httpx.AsyncClient, dataset_id: str, files: list[tuple[str, bytes]]
) -> list[str]:
    """Upload `files` (name, bytes) to the dataset, parse them, and wait until every run
    is DONE: the documents' ids, in order."""
    uploaded = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart(files),
        headers={"Content-Type": MULTIPART},
    )
    assert uploaded.status_code == 201, uploaded.text
    ids = [d["id"] for d in uploaded.json()["data"]]
    await client.post(f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": ids})
    for document_id in ids:
        assert (await wait_for_run(client, dataset_id, document_id))["run"] == "DONE"
    return ids


def account_fixtures(scope: str = "function", **account: Any) -> tuple[Any, Any]:
    """The `account` and `client` fixtures of a module over an `IngestStack` (its `stack`
    fixture): a user made through the services (`create_account(**account)`), and an
    HTTP client to the stack signed in as them. Assign both to those names:
    `account, client = account_fixtures(password=False)`."""

    @pytest.fixture(scope=scope, name="account")
    async def account_fixture(stack: IngestStack) -> Account:
        return await create_account(stack.settings, **account)

    @pytest.fixture(scope=scope, name="client")
    async def client_fixture(
        stack: IngestStack, account: Account
    ) -> AsyncIterator[httpx.AsyncClient]:
        async with stack.client(account) as http:
            yield http

    return account_fixture, client_fixture


def stack_fixture(name: str, **overrides: Any) -> Any:
    """A module's `stack` fixture: a private `IngestStack` with these setting overrides,
    started once for the module. Assign it to that name: `stack = stack_fixture("feed")`."""

    @pytest.fixture(scope="module", name="stack")
    async def stack_of_module(
        app: Any, settings: Settings, tmp_path_factory: pytest.TempPathFactory
    ) -> AsyncIterator[IngestStack]:
        async with ingest_stack(settings, tmp_path_factory.mktemp(name), **overrides) as running:
            yield running

    return stack_of_module
