"""Elasticsearch going away and coming back under a live web process and ingest worker
and chat worker (a TCP switch in front of the test node): the processes stay up;
readiness names the search store while it is gone; a parse ends FAIL saying the search
store is unavailable (and parses once it is back); a request that needs the store is a
503 naming it, never a 500; a RAG turn ends with an error event saying so."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from quart import Quart

from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.fake_openai import fake_openai_server
from tests.support.ingest_stack import IngestStack, ingest_stack, wait_for_run
from tests.support.knowledge import MULTIPART, multipart
from tests.support.live_server import start_chat_worker
from tests.support.sse_client import ask_task
from tests.support.task_models import CHEAP, with_models
from tests.support.tcp_switch import TcpSwitch

pytestmark = pytest.mark.sqlite_only

UNAVAILABLE = "The search store is unavailable (no node answers)"


@dataclass
class OutageStack:
    ingest: IngestStack
    switch: TcpSwitch


@pytest.fixture(scope="module")
async def stack(
    app: Quart,
    settings: Settings,
    elasticsearch_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[OutageStack]:
    switch = TcpSwitch(int(elasticsearch_url.rstrip("/").rsplit(":", 1)[1]))
    await switch.on()
    try:
        async with (
            fake_openai_server(tokens=5) as upstream,
            ingest_stack(
                with_models(settings, upstream.base_url, upstream.base_url),
                tmp_path_factory.mktemp("search-outage"),
                search_store="elasticsearch",
                elasticsearch_url=f"http://127.0.0.1:{switch.port}",
                elasticsearch_index_prefix=f"sluice-outage-{time.monotonic_ns()}",
                elasticsearch_max_retries=1,
                # Indexing waits out an outage this long before the run ends FAIL.
                ingest_outage_retry_seconds=1,
            ) as running,
        ):
            running.workers.append(await start_chat_worker(running.settings, running.log_dir))
            yield OutageStack(running, switch)
    finally:
        await switch.off()


@pytest.fixture(scope="module")
async def account(stack: OutageStack) -> Account:
    return await create_account(stack.ingest.settings, credits=1000, password=False)


async def parse(client: httpx.AsyncClient, dataset_id: str) -> dict:
    uploaded = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart([(f"notes-{time.monotonic_ns()}.txt", b"Lake Baikal is deep. " * 50)]),
        headers={"Content-Type": MULTIPART},
    )
    assert uploaded.status_code == 201, uploaded.text
    document_id = uploaded.json()["data"][0]["id"]
    parsed = await client.post(
        f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document_id]}
    )
    assert parsed.status_code == 200, parsed.text
    return await wait_for_run(client, dataset_id, document_id)


async def test_the_store_going_away_and_back(stack: OutageStack, account: Account) -> None:
    async with stack.ingest.client(account) as client:
        created = await client.post("/api/v1/datasets", json={"name": "outage"})
        assert created.status_code == 201, created.text
        dataset_id = created.json()["data"]["id"]
        assert (await parse(client, dataset_id))["run"] == "DONE"
        assistant = await client.post(
            "/api/v1/chats",
            json={"name": "outage", "dataset_ids": [dataset_id], "llm": {"model_name": CHEAP}},
        )
        assert assistant.status_code == 201, assistant.text
        chat_id = assistant.json()["data"]["id"]
        session = await client.post(f"/api/v1/chats/{chat_id}/sessions", json={"name": "s"})
        session_id = session.json()["data"]["id"]

        await stack.switch.off()
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["message"] == "Not ready: search store (no node answers)"
        failed = await parse(client, dataset_id)
        assert failed["run"] == "FAIL"
        assert failed["progress_msg"].endswith(
            f"Indexing failed. {UNAVAILABLE}; parse the document again once it is back"
        ), failed["progress_msg"]
        chunks = await client.get(f"/api/v1/datasets/{dataset_id}/documents/{failed['id']}/chunks")
        assert chunks.status_code == 503
        assert chunks.json()["message"] == f"{UNAVAILABLE}; try again"
        assert chunks.headers["Retry-After"] == "5"
        found = await client.post(
            "/api/v1/retrieval", json={"question": "deep lake", "dataset_ids": [dataset_id]}
        )
        assert found.status_code == 503, found.text
        assert (await client.get("/healthz")).status_code == 200
        frames = await ask_task(client, session_id, "How deep is Lake Baikal?")
        assert frames[-1].event == "error", [f.event for f in frames]
        assert frames[-1].data["code"] == "search_unavailable"
        assert frames[-1].data["message"] == (
            "Searching the knowledge bases failed: the search store is unavailable "
            "(no node answers); try again"
        )

        await stack.switch.on()
        deadline = time.monotonic() + 60
        while (await client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "never ready again"
            await asyncio.sleep(0.5)
        assert (await parse(client, dataset_id))["run"] == "DONE"
        found = await client.post(
            "/api/v1/retrieval", json={"question": "deep lake", "dataset_ids": [dataset_id]}
        )
        assert found.status_code == 200, found.text
        assert found.json()["data"]["chunks"]
    for process in [stack.ingest.server.server, *stack.ingest.workers]:
        assert process.process.poll() is None, process.log_tail()
