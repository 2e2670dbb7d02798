"""The document status feed over real sockets: SSE `GET /api/v1/events` and the
WebSocket's `subscribe_feed`, fed by a real ingest worker parsing real uploads.

Events carry ids and resume with Last-Event-ID (nothing missed, nothing repeated, and
reading consumes nothing); progress is throttled while the final state always arrives;
a resume point the feed no longer keeps gets `feed.reset`; a user sees only their own
documents; on the WebSocket the feed is multiplexed with task streams.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from quart import Quart
from websockets.asyncio.client import ClientConnection

from backend.constants import document_feed_key
from backend.models import Task
from backend.models.tasks import TaskState
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import DoneEvent, TokenEvent
from tests.support.accounts import Account, create_account
from tests.support.ingest_stack import IngestStack, account_fixtures, ingest_stack, wait_for_run
from tests.support.knowledge import MULTIPART, multipart
from tests.support.sse_client import Frame, frames

RECEIVE_TIMEOUT = 15
TEXT = "\n\n".join(f"Line {n} tells of rivers, herons and otters." for n in range(60))


@pytest.fixture(scope="module")
async def stack(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[IngestStack]:
    async with ingest_stack(settings, tmp_path_factory.mktemp("feed-live")) as running:
        yield running


account, client = account_fixtures()


async def start_parse(client: httpx.AsyncClient, name: str = "feed.txt") -> tuple[str, str]:
    """A dataset with one uploaded document, queued for parsing: (dataset id, doc id)."""
    created = await client.post(
        "/api/v1/datasets", json={"name": name, "parser_config": {"chunk_token_num": 16}}
    )
    dataset_id = created.json()["data"]["id"]
    uploaded = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart([(name, TEXT.encode())]),
        headers={"Content-Type": MULTIPART},
    )
    [document] = uploaded.json()["data"]
    response = await client.post(
        f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document["id"]]}
    )
    assert response.status_code == 200, response.text
    return dataset_id, document["id"]


@asynccontextmanager
async def feed(
    stack: IngestStack, account: Account, last_event_id: str | None = None
) -> AsyncIterator[AsyncIterator[Frame]]:
    """The account's SSE feed (token in the query, as EventSource sends it)."""
    params = {"access_token": account.access_token}
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with (
        httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http,
        http.stream("GET", "/api/v1/events", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield frames(response)


async def until_done(stream: AsyncIterator[Frame], document_id: str) -> list[Frame]:
    """Feed events (heartbeats and the opening frame skipped) up to the document's end."""
    received: list[Frame] = []
    async with asyncio.timeout(RECEIVE_TIMEOUT * 4):
        async for frame in stream:
            if frame.event is None:
                continue
            received.append(frame)
            if frame.event == "document.done" and frame.data["document_id"] == document_id:
                return received
    raise AssertionError(f"the feed ended early: {received}")


async def test_sse_feed_follows_a_parse_to_done_and_resumes_without_consuming(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    stack.embeddings.delay = 0.1
    try:
        async with feed(stack, account) as stream:
            first = await anext(stream)
            assert first.retry is not None and first.event is None
            dataset_id, document_id = await start_parse(client)
            events = await until_done(stream, document_id)
    finally:
        stack.embeddings.delay = 0
    document = await wait_for_run(client, dataset_id, document_id)

    assert all(e.id and e.data["document_id"] == document_id for e in events)
    assert all(e.data["dataset_id"] == dataset_id for e in events)
    assert events[0].event == "document.progress" and events[0].data["run"] == "RUNNING"
    assert events[0].data["progress"] == 0 and events[0].data["progress_msg"].endswith("queued.")
    done = events[-1].data
    assert done["run"] == "DONE" and done["progress"] == 1
    assert done["chunk_count"] == document["chunk_count"] > 20
    assert done["token_count"] == document["token_count"]
    assert done["progress_msg"] == document["progress_msg"].rsplit("\n", 1)[-1]
    progress = [e.data["progress"] for e in events]
    assert progress == sorted(progress)
    assert any(
        "Embedded" in e.data["progress_msg"] and "/" in e.data["progress_msg"] for e in events
    )
    # Throttled: fewer progress events than embedding batches (4 chunks each).
    batches = -(-document["chunk_count"] // stack.settings.embedding_batch_size)
    assert len(events) - 1 < batches

    # Resuming from an event gets exactly the ones after it, again: nothing was consumed.
    middle = events[len(events) // 2]
    async with feed(stack, account, middle.id) as stream:
        rest = await until_done(stream, document_id)
    assert [e.id for e in rest] == [e.id for e in events[len(events) // 2 + 1 :]]
    async with feed(stack, account, "0-0") as stream:
        everything = await until_done(stream, document_id)
    assert [e.id for e in everything][-len(events) :] == [e.id for e in events]


async def test_a_user_sees_only_their_own_documents(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    stranger = await create_account(stack.settings)
    async with feed(stack, stranger) as theirs:
        dataset_id, document_id = await start_parse(client, "mine.txt")
        await wait_for_run(client, dataset_id, document_id)
        seen: list[Frame] = []
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):
                async for frame in theirs:
                    if frame.event is not None:
                        seen.append(frame)
        assert seen == []
    async with feed(stack, stranger, "0-0") as replay:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):
                async for frame in replay:
                    assert frame.event is None, frame


async def test_a_lost_resume_point_gets_a_reset_and_bad_requests_are_refused(
    stack: IngestStack, account: Account
) -> None:
    redis = aioredis.from_url(stack.settings.redis_url)
    key = document_feed_key(stack.settings.redis_prefix, account.id)
    try:
        await redis.xadd(key, {"type": "document.progress", "data": "{}"}, id="1000-0")
        await redis.xadd(key, {"type": "document.progress", "data": '{"n": 2}'}, id="2000-0")
        await redis.xtrim(key, maxlen=1, approximate=False)
        async with feed(stack, account, "1000-0") as stream:
            frames_seen = [await anext(stream) for _ in range(3)]
        reset, replayed = frames_seen[1], frames_seen[2]
        assert reset.event == "feed.reset" and reset.id is None
        assert "GET /api/v1/datasets" in reset.data["message"]
        assert (replayed.id, replayed.data) == ("2000-0", {"n": 2})
        # A resume point still kept gets no reset.
        async with feed(stack, account, "2000-0") as stream:
            await anext(stream)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.5):
                    async for frame in stream:
                        assert frame.event is None, frame
    finally:
        await redis.delete(key)
        await redis.aclose()

    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http:
        bad = await http.get(
            "/api/v1/events", params={"access_token": account.access_token, "last_event_id": "x"}
        )
        assert bad.status_code == 400 and "last event id" in bad.json()["message"]
        huge = await http.get(
            "/api/v1/events",
            params={"access_token": account.access_token},
            headers={"Last-Event-ID": f"{2**64}-0"},
        )
        assert huge.status_code == 400
        assert (await http.get("/api/v1/events")).status_code == 401
        forged = await http.get("/api/v1/events", params={"access_token": "forged"})
        assert forged.status_code == 401


async def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT))


async def request(ws: ClientConnection, **message: Any) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    return await receive(ws)


@asynccontextmanager
async def socket(stack: IngestStack, account: Account) -> AsyncIterator[ClientConnection]:
    url = f"{stack.server.ws_url}?access_token={account.access_token}"
    async with websockets.connect(url) as connection:
        assert (await receive(connection))["type"] == "ready"
        yield connection


async def until_ws_done(ws: ClientConnection, document_id: str) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    while True:
        message = await receive(ws)
        received.append(message)
        if message["type"] == "document.done" and message["document_id"] == document_id:
            return received


async def test_websocket_feed_is_multiplexed_with_task_streams_and_resumes(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    redis = aioredis.from_url(stack.settings.redis_url)
    task = await Task.create(user_id=account.id, model="test-model", state=TaskState.RUNNING)
    stream = TaskStream.for_task(redis, stack.settings, task.id)
    try:
        async with socket(stack, account) as ws:
            assert await request(ws, type="subscribe_feed", ref="f") == {
                "type": "feed_subscribed",
                "ref": "f",
            }
            assert (await request(ws, type="subscribe", task_id=task.id))["type"] == "subscribed"
            await stream.append(TokenEvent(delta="Hello"))
            _, document_id = await start_parse(client, "ws.txt")
            await stream.append(
                DoneEvent(message_id=None, prompt_tokens=1, completion_tokens=1, cost=0)
            )
            received = await until_ws_done(ws, document_id)
            task_events = [m for m in received if m.get("task_id") == task.id]
            feed_events = [m for m in received if m["type"].startswith("document.")]
            if not any(m["type"] == "done" for m in task_events):
                task_events.append(await receive(ws))
            assert [m["type"] for m in task_events] == ["token", "done"]
            assert feed_events[0]["type"] == "document.progress" and feed_events[0]["id"]
            assert all(m["document_id"] == document_id for m in feed_events)
            assert feed_events[-1]["run"] == "DONE" and feed_events[-1]["chunk_count"] > 0

        # A new connection resumes after an event it had: exactly the rest.
        async with socket(stack, account) as ws:
            middle = feed_events[len(feed_events) // 2]
            reply = await request(ws, type="subscribe_feed", last_event_id=middle["id"])
            assert reply["type"] == "feed_subscribed"
            rest = await until_ws_done(ws, document_id)
            assert [m["id"] for m in rest] == [
                m["id"] for m in feed_events[len(feed_events) // 2 + 1 :]
            ]
            assert await request(ws, type="unsubscribe_feed", ref="u") == {
                "type": "feed_unsubscribed",
                "ref": "u",
            }
            again = await request(ws, type="unsubscribe_feed")
            assert again["type"] == "error" and again["code"] == 404
            bad = await request(ws, type="subscribe_feed", last_event_id="nope")
            assert bad["type"] == "error" and bad["code"] == 400
    finally:
        await redis.aclose()
