"""Metrics as an operator scrapes them, over real sockets: two web processes behind one
port (Hypercorn `--workers 2`, PROMETHEUS_MULTIPROC_DIR) whose /metrics sums both,
guarded by METRICS_TOKEN; a chat worker and an ingest worker each serving their own on
WORKER_METRICS_PORT. Every figure is parsed with prometheus-client's own text parser
and must move by exactly what the test did."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets
from arq.connections import ArqRedis
from prometheus_client import CollectorRegistry, multiprocess
from quart import Quart

from backend.connections import redis_pool
from backend.constants import CHAT_QUEUE, queue_name
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.fake_openai import fake_openai_server
from tests.support.ingest_stack import (
    IngestStack,
    ingest_stack,
    parsed_documents,
    start_ingest_worker,
)
from tests.support.live_server import (
    ServerProcess,
    create_chat_session,
    free_port,
    start_chat_worker,
)
from tests.support.metrics_samples import Samples, parsed, value
from tests.support.sse_client import ask_task, bearer
from tests.support.task_models import CHEAP, with_models

pytestmark = pytest.mark.sqlite_only

TOKEN = "metrics-" + uuid.uuid4().hex


@dataclass
class MetricsStack:
    ingest: IngestStack
    multiproc_dir: Path
    chat_worker: ServerProcess
    chat_metrics_port: int
    ingest_worker: ServerProcess
    ingest_metrics_port: int

    @property
    def base_url(self) -> str:
        return self.ingest.base_url

    @property
    def settings(self) -> Settings:
        return self.ingest.settings


@pytest.fixture(scope="module")
async def stack(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MetricsStack]:
    log_dir = tmp_path_factory.mktemp("metrics-live")
    multiproc_dir = log_dir / "prometheus"
    multiproc_dir.mkdir()
    async with fake_openai_server(tokens=20) as fast:
        base = with_models(settings, fast.base_url, fast.base_url)
        # Only the web processes share the directory: each worker serves its own figures.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
        try:
            starting = ingest_stack(base, log_dir, workers=0, metrics_token=TOKEN, web_workers=2)
            ingest = await starting.__aenter__()
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        try:
            chat_port, ingest_port = free_port(), free_port()
            chat = await start_chat_worker(
                ingest.settings.model_copy(update={"worker_metrics_port": chat_port}), log_dir
            )
            worker = await start_ingest_worker(
                ingest.settings.model_copy(update={"worker_metrics_port": ingest_port}), log_dir
            )
            try:
                yield MetricsStack(ingest, multiproc_dir, chat, chat_port, worker, ingest_port)
            finally:
                chat.stop()
                worker.stop()
        finally:
            await starting.__aexit__(None, None, None)
            shutil.rmtree(multiproc_dir, ignore_errors=True)


@pytest.fixture(scope="module")
async def account(stack: MetricsStack) -> Account:
    return await create_account(stack.settings, credits=1000, password=False)


async def scrape(url: str, token: str | None = TOKEN) -> Samples:
    headers = bearer(token) if token else {}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parsed(response.text)


def web(stack: MetricsStack) -> str:
    return f"{stack.base_url}/metrics"


def worker(port: int) -> str:
    return f"http://127.0.0.1:{port}/metrics"


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "the figure never reached the expected value"
        await asyncio.sleep(0.1)


def per_process(multiproc_dir: Path, tmp_path: Path) -> list[Samples]:
    """Each web process's own figures, read from its file alone."""
    figures = []
    for path in sorted(multiproc_dir.glob("counter_*.db")):
        alone = tmp_path / path.stem
        alone.mkdir(parents=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))
        figures.append(
            {
                (s.name, frozenset(s.labels.items())): s.value
                for family in registry.collect()
                for s in family.samples
            }
        )
    return figures


HEALTHZ = {"route": "/healthz", "method": "GET", "status": "200"}


async def test_requests_are_summed_over_both_web_processes(
    stack: MetricsStack, tmp_path: Path
) -> None:
    before = value(await scrape(web(stack)), "sluice_http_requests_total", **HEALTHZ)
    sent = 0
    for _ in range(10):  # fresh connections, until both processes have answered some
        async with httpx.AsyncClient(timeout=10) as client:
            await asyncio.gather(*(client.get(f"{stack.base_url}/healthz") for _ in range(10)))
        sent += 10
        counts = [
            value(s, "sluice_http_requests_total", **HEALTHZ)
            for s in per_process(stack.multiproc_dir, tmp_path / str(sent))
        ]
        if sum(1 for count in counts if count) >= 2:
            break
    assert sum(1 for count in counts if count) >= 2, f"one process served all: {counts}"
    # Whichever process answers the scrape, the figure is both processes' sum.
    for _ in range(4):
        samples = await scrape(web(stack))
        assert value(samples, "sluice_http_requests_total", **HEALTHZ) == before + sent
        histogram = value(
            samples, "sluice_http_request_duration_seconds_count", route="/healthz", method="GET"
        )
        assert histogram == before + sent


async def test_routes_are_templates_and_unknown_paths_one_series(
    stack: MetricsStack, account: Account
) -> None:
    documents = "/api/v1/datasets/<id:dataset_id>/documents"
    dataset = {"route": documents, "method": "GET", "status": "404"}
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    before = await scrape(web(stack))
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=bearer(account.access_token)
    ) as client:
        for _ in range(2):  # two ids, one series
            listed = await client.get(f"/api/v1/datasets/{uuid.uuid4().hex}/documents")
            assert listed.status_code == 404
        assert (await client.get(f"/no/such/{uuid.uuid4().hex}")).status_code == 404
    after = await scrape(web(stack))
    for labels, moved in ((dataset, 2), (unmatched, 1)):
        grown = value(after, "sluice_http_requests_total", **labels)
        assert grown - value(before, "sluice_http_requests_total", **labels) == moved
    assert not [
        labels
        for name, labels in after
        if name == "sluice_http_requests_total" and any(v.startswith("/no/such") for _, v in labels)
    ]


async def test_metrics_need_the_token(stack: MetricsStack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for url in (web(stack), worker(stack.chat_metrics_port), worker(stack.ingest_metrics_port)):
            assert (await client.get(url)).status_code == 401
            assert (await client.get(url, headers=bearer("wrong"))).status_code == 401
            assert (await client.get(url, headers=bearer(TOKEN))).status_code == 200
        refused = await client.get(web(stack))
        assert refused.json()["message"] == "Metrics need Authorization: Bearer <METRICS_TOKEN>"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")


async def open_connections(stack: MetricsStack, kind: str) -> float:
    return value(await scrape(web(stack)), "sluice_open_connections", kind=kind)


async def test_open_sse_and_websocket_connections_are_counted(
    stack: MetricsStack, account: Account
) -> None:
    base_sse = await open_connections(stack, "sse")
    base_ws = await open_connections(stack, "websocket")
    async with (
        httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client,
        client.stream("GET", "/api/v1/events", headers=bearer(account.access_token)) as feed,
    ):
        assert feed.status_code == 200
        assert await open_connections(stack, "sse") == base_sse + 1
        ws_url = stack.base_url.replace("http://", "ws://") + "/api/v1/ws"
        async with websockets.connect(
            ws_url, additional_headers=bearer(account.access_token)
        ) as ws:
            await ws.recv()  # "ready"
            assert await open_connections(stack, "websocket") == base_ws + 1

        async def websocket_closed() -> bool:
            return await open_connections(stack, "websocket") == base_ws

        await eventually(websocket_closed)

    async def feed_closed() -> bool:
        return await open_connections(stack, "sse") == base_sse

    await eventually(feed_closed)


async def test_task_latency_rate_and_outcome_on_the_chat_worker(
    stack: MetricsStack, account: Account
) -> None:
    url = worker(stack.chat_metrics_port)
    before = await scrape(url)
    session = await create_chat_session(account, CHEAP)
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=bearer(account.access_token), timeout=30
    ) as client:
        frames = await ask_task(client, session.id, "Hello")
    assert frames[-1].event == "done"

    async def counted() -> bool:
        after = await scrape(url)
        return (
            value(after, "sluice_tasks_total", outcome="succeeded")
            == value(before, "sluice_tasks_total", outcome="succeeded") + 1
        )

    await eventually(counted)
    after = await scrape(url)
    for name in ("sluice_task_first_token_seconds_count", "sluice_task_tokens_per_second_count"):
        assert value(after, name) == value(before, name) + 1
    first_token = value(after, "sluice_task_first_token_seconds_sum") - value(
        before, "sluice_task_first_token_seconds_sum"
    )
    assert 0 < first_token < 10
    # The worker serves the queue depths too (its reaper cron job may be in the queue).
    assert ("sluice_queue_depth", frozenset({("queue", "chat")})) in after
    assert value(after, "sluice_queue_depth", queue="chat") <= 2


async def test_ingestion_and_search_figures(stack: MetricsStack, account: Account) -> None:
    url = worker(stack.ingest_metrics_port)
    before = await scrape(url)
    web_before = await scrape(web(stack))
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=bearer(account.access_token), timeout=30
    ) as client:
        created = await client.post("/api/v1/datasets", json={"name": f"m-{uuid.uuid4().hex[:6]}"})
        assert created.status_code == 201, created.text
        dataset_id = created.json()["data"]["id"]
        (document_id,) = await parsed_documents(
            client, dataset_id, [("lakes.txt", b"Lake Baikal is the deepest lake on Earth.\n" * 40)]
        )
        listed = await client.get(
            f"/api/v1/datasets/{dataset_id}/documents", params={"id": document_id}
        )
        chunk_count = listed.json()["data"]["docs"][0]["chunk_count"]
        found = await client.post(
            "/api/v1/retrieval", json={"question": "deepest lake", "dataset_ids": [dataset_id]}
        )
        assert found.status_code == 200, found.text
    after = await scrape(url)
    assert (
        value(after, "sluice_ingest_documents_total", outcome="done")
        == value(before, "sluice_ingest_documents_total", outcome="done") + 1
    )
    assert chunk_count > 0
    assert (
        value(after, "sluice_ingest_chunks_total") - value(before, "sluice_ingest_chunks_total")
        == chunk_count
    )
    web_after = await scrape(web(stack))
    for leg in ("keyword", "vector", "legs"):
        name = "sluice_search_seconds_count"
        grown = value(web_after, name, store="embedded", leg=leg) - value(
            web_before, name, store="embedded", leg=leg
        )
        assert grown == 1, leg


async def test_queue_depth_counts_waiting_jobs(stack: MetricsStack) -> None:
    """50 jobs deferred by an hour: the workers' cron jobs come and go in the same queue
    (one or two at a time), so the check is on a margin they cannot fill."""
    redis: ArqRedis = redis_pool(stack.settings)
    chat_queue = queue_name(stack.settings.redis_prefix, CHAT_QUEUE)
    try:
        jobs = [
            await redis.enqueue_job("ping", _queue_name=chat_queue, _defer_by=3600)
            for _ in range(50)
        ]
        depth = value(await scrape(web(stack)), "sluice_queue_depth", queue="chat")
        assert 50 <= depth <= 53
        await redis.zrem(chat_queue, *[job.job_id for job in jobs if job is not None])
        depth = value(await scrape(web(stack)), "sluice_queue_depth", queue="chat")
        assert depth <= 3
    finally:
        await redis.aclose()
