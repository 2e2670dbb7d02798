"""`/readyz` names every dependency that is down, with why, and answers within
READINESS_TIMEOUT_SECONDS (1.5 s) whatever hangs: a Redis or Elasticsearch that accepts
the connection and never answers is the case that would otherwise hold the probe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from quart import Quart
from quart.testing import QuartClient

from backend.connections import redis_pool
from backend.search import stores
from backend.search.elasticsearch_store import ElasticsearchSearchStore
from backend.services.readiness import ReadinessProbes
from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.knowledge import create_dataset, upload_ok
from tests.support.live_server import free_port

# /readyz must answer within 2 s; the probes give up at 1.5 s.
DEADLINE_SECONDS = 2.0


class BlackHole:
    """A TCP server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.held: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.held.append(writer)

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self.held:
            writer.close()
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def black_hole() -> AsyncIterator[int]:
    hole = BlackHole()
    yield await hole.start()
    await hole.stop()


async def timed_readyz(client: QuartClient) -> tuple[int, str, float]:
    started = time.monotonic()
    response = await client.get("/readyz")
    elapsed = time.monotonic() - started
    body = await response.get_json()
    return response.status_code, body.get("message", ""), elapsed


async def test_ready_when_every_dependency_answers(client: QuartClient) -> None:
    status, _, elapsed = await timed_readyz(client)
    assert status == 200
    assert elapsed < DEADLINE_SECONDS


async def test_hanging_redis_is_named_within_the_deadline(
    app: Quart, client: QuartClient, settings: Settings, black_hole: int, monkeypatch
) -> None:
    hanging = redis_pool(
        settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{black_hole}/0"})
    )
    monkeypatch.setitem(app.config, "REDIS", hanging)
    try:
        status, message, elapsed = await timed_readyz(client)
    finally:
        await hanging.aclose()
    assert status == 503
    assert message == "Not ready: redis (no answer in 1.5 s)"
    assert elapsed < DEADLINE_SECONDS


async def test_unreachable_and_hanging_search_stores_are_named(
    client: QuartClient, black_hole: int, monkeypatch
) -> None:
    refused = ElasticsearchSearchStore(f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(stores, "_store", refused)
    try:
        status, message, _ = await timed_readyz(client)
    finally:
        await refused.close()
    assert status == 503
    assert message == "Not ready: search store (no node answers)"

    hanging = ElasticsearchSearchStore(f"http://127.0.0.1:{black_hole}")
    monkeypatch.setattr(stores, "_store", hanging)
    try:
        status, message, elapsed = await timed_readyz(client)
    finally:
        await hanging.close()
    assert status == 503
    assert message.startswith("Not ready: search store (")
    assert elapsed < DEADLINE_SECONDS


async def test_several_down_are_all_named(
    app: Quart, client: QuartClient, settings: Settings, black_hole: int, monkeypatch
) -> None:
    hanging = redis_pool(
        settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{black_hole}/0"})
    )
    refused = ElasticsearchSearchStore(f"http://127.0.0.1:{free_port()}")
    monkeypatch.setitem(app.config, "REDIS", hanging)
    monkeypatch.setattr(stores, "_store", refused)
    try:
        status, message, elapsed = await timed_readyz(client)
    finally:
        await hanging.aclose()
        await refused.close()
    assert status == 503
    assert message == "Not ready: redis (no answer in 1.5 s); search store (no node answers)"
    assert elapsed < DEADLINE_SECONDS


async def test_a_probe_that_ignores_cancellation_cannot_hold_readiness() -> None:
    """Probes are left behind, not awaited, once the timeout passes."""
    release = asyncio.Event()

    async def stubborn(within: float) -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # swallows the cancellation, as a badly written client might

    async def broken(within: float) -> None:
        raise ConnectionRefusedError("refused")

    probes = ReadinessProbes()
    probes.add("storage", stubborn)
    probes.add("sql", broken)
    started = time.monotonic()
    failures = await probes.down(0.3)
    assert time.monotonic() - started < 1.0
    assert failures == {"storage": "no answer in 0.3 s", "sql": "refused"}
    release.set()
    await asyncio.sleep(0)


async def test_a_request_needing_a_store_that_is_down_is_a_503_naming_it(
    client: QuartClient, user: Account, monkeypatch
) -> None:
    """Mid-request, as at readiness: a clear 503 (retry later), never a 500."""
    dataset = await create_dataset(client, user)
    (document,) = await upload_ok(client, user, dataset["id"], [("notes.txt", b"some text")])
    refused = ElasticsearchSearchStore(f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(stores, "_store", refused)
    try:
        response = await client.get(
            f"/api/v1/datasets/{dataset['id']}/documents/{document['id']}/chunks",
            headers=user.headers,
        )
    finally:
        await refused.close()
    assert response.status_code == 503
    assert (await response.get_json())["message"] == (
        "The search store is unavailable (no node answers); try again"
    )
    assert response.headers["Retry-After"] == "5"
