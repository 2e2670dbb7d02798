"""A document's feed events come in step order, whoever publishes them.

The web process announces "queued" and the ingest worker "received"; a worker may pick a
job up the instant it is enqueued. Here the adversarial schedule is forced: an instant
worker starts the run right inside the enqueue (real SQL, real Redis, the real
`document_runs.start` and `RunReport.started`), before the web process has done anything
more. The feed must still read "queued" then "received", each once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis
from quart.testing import QuartClient

from backend.connections import redis_pool
from backend.constants import document_feed_key
from backend.knowledge import document_runs, parse_queue
from backend.knowledge.run_report import RunReport
from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.knowledge import create_dataset, upload_ok


@pytest.fixture
async def arq_redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    redis = redis_pool(settings)
    yield redis
    await redis.aclose()


async def feed_lines(redis: ArqRedis, settings: Settings, user_id: int, document_id: str) -> list:
    entries = await redis.xrange(document_feed_key(settings.redis_prefix, user_id))
    events = [json.loads(fields[b"data"]) for _, fields in entries]
    return [e["progress_msg"] for e in events if e["document_id"] == document_id]


async def test_received_never_precedes_queued_even_with_an_instant_worker(
    client: QuartClient,
    owner: Account,
    settings: Settings,
    arq_redis: ArqRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enqueue = parse_queue.enqueue_parse

    async def enqueue_and_start_at_once(redis, settings_, document_id: str, run_id: str) -> None:
        await enqueue(redis, settings_, document_id, run_id)
        document = await document_runs.start(document_id, run_id)
        assert document is not None
        await RunReport(arq_redis, settings, document, run_id).started()

    monkeypatch.setattr(parse_queue, "enqueue_parse", enqueue_and_start_at_once)
    dataset = await create_dataset(client, owner)
    uploaded = await upload_ok(client, owner, dataset["id"], [("a.txt", b"Some text.")])
    ids = [document["id"] for document in uploaded]
    response = await client.post(
        f"/api/v1/datasets/{dataset['id']}/chunks",
        json={"document_ids": ids},
        headers=owner.headers,
    )
    assert response.status_code == 200, await response.get_data(as_text=True)

    lines = await feed_lines(arq_redis, settings, owner.id, ids[0])
    steps = [line.split(" ", 1)[1] for line in lines]
    assert steps == ["Task is queued.", "Task has been received."], lines
