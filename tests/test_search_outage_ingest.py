"""The search store down when a document's chunks are ready to index: the ingest worker
waits the outage out (capped back-off, logged once when it starts and once when it ends)
and indexes once the store is back, so the run ends DONE with every chunk findable, no
restart spent and no "parsing failed". (Past INGEST_OUTAGE_RETRY_SECONDS the run ends FAIL
naming the indexing step: tests/test_search_outage_live.py.) Elasticsearch sits behind a
TCP switch, refusing connections while off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from quart import Quart

from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.ingest_stack import IngestStack, ingest_stack, wait_for_run
from tests.support.knowledge import MULTIPART, multipart
from tests.support.tcp_switch import TcpSwitch

pytestmark = pytest.mark.sqlite_only

TEXT = "\n\n".join(f"Section {n}: the weir, the sluice gate and the mill race." for n in range(30))
OUTAGE_SECONDS = 3.0


@pytest.fixture(scope="module")
async def switch(elasticsearch_url: str) -> AsyncIterator[TcpSwitch]:
    forwarder = TcpSwitch(int(elasticsearch_url.rstrip("/").rsplit(":", 1)[1]))
    await forwarder.on()
    yield forwarder
    await forwarder.off()


@pytest.fixture(scope="module")
async def stack(
    app: Quart, settings: Settings, switch: TcpSwitch, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[IngestStack]:
    async with ingest_stack(
        settings,
        tmp_path_factory.mktemp("search-outage-ingest"),
        search_store="elasticsearch",
        elasticsearch_url=f"http://127.0.0.1:{switch.port}",
        elasticsearch_index_prefix=f"sluice-ingest-outage-{time.monotonic_ns()}",
        elasticsearch_max_retries=1,
        ingest_lease_seconds=1.5,
        ingest_sweep_interval_seconds=1,
        ingest_outage_retry_seconds=60,
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def account(stack: IngestStack) -> Account:
    return await create_account(stack.settings, password=False)


async def test_indexing_waits_for_the_store_and_the_run_ends_done(
    stack: IngestStack, switch: TcpSwitch, account: Account
) -> None:
    async with stack.client(account) as client:
        created = await client.post(
            "/api/v1/datasets", json={"name": "mill", "parser_config": {"chunk_token_num": 16}}
        )
        dataset_id = created.json()["data"]["id"]
        uploaded = await client.post(
            f"/api/v1/datasets/{dataset_id}/documents",
            content=multipart([("mill.txt", TEXT.encode())]),
            headers={"Content-Type": MULTIPART},
        )
        document_id = uploaded.json()["data"][0]["id"]
        await switch.off()
        try:
            parsed = await client.post(
                f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document_id]}
            )
            assert parsed.status_code == 200, parsed.text
            # Parsed and embedded (the store is not needed for that), then indexing waits.
            await wait_for_run(
                client, dataset_id, document_id, runs=("RUNNING",), progress_above=0.9
            )
            await asyncio.sleep(OUTAGE_SECONDS)
            # Still waiting, not FAIL (within=0: one look).
            await wait_for_run(client, dataset_id, document_id, runs=("RUNNING",), within=0)
        finally:
            await switch.on()
        document = await wait_for_run(client, dataset_id, document_id, within=60)
        assert document["run"] == "DONE", document["progress_msg"]
        assert "stopped unexpectedly" not in document["progress_msg"]
        assert document["chunk_count"] > 0
        found = await client.post(
            "/api/v1/retrieval", json={"question": "sluice gate", "dataset_ids": [dataset_id]}
        )
        assert found.status_code == 200, found.text
        assert found.json()["data"]["chunks"]
    log = "\n".join(worker.log_path.read_text() for worker in stack.workers)
    assert log.count("the search store (indexing) is unreachable") == 1, log[-3000:]
    assert log.count("the search store (indexing) is back after") == 1, log[-3000:]
    for worker in stack.workers:
        assert worker.process.poll() is None, worker.log_tail()
