"""Replicas behind a load balancer, proven end to end (tests/support/replica_stack.py): two
web processes behind nginx with TLS, two chat and two ingest workers, each with its own
DATA_DIR, sharing only PostgreSQL, Redis, Elasticsearch and S3. Every request goes
through nginx, which spreads consecutive requests over both replicas (round robin, a new
connection each), so a property that holds for every request here holds whichever
replica answers.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from quart import Quart

from backend.models.chats import Message
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.images import image_bytes
from tests.support.ingest_stack import SlowEmbeddings, start_ingest_worker
from tests.support.knowledge import MULTIPART, multipart
from tests.support.replica_stack import ReplicaStack, replica_stack, require_services
from tests.support.sse_client import Frame, events, frames
from tests.support.task_models import SLOW

pytestmark = [pytest.mark.timeout(300), pytest.mark.postgres_only]
RECEIVE_TIMEOUT = 30
TERMINAL_FEED_EVENTS = ("document.done", "document.failed", "document.cancelled")
TEXT = "\n\n".join(f"Paragraph {n}: the heron named Quillon nests by lake {n}." for n in range(40))


@pytest.fixture(scope="module")
async def stack_and_embeddings(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ReplicaStack, SlowEmbeddings]]:
    require_services(settings)
    async with replica_stack(settings, tmp_path_factory.mktemp("replicas")) as running:
        yield running


@pytest.fixture(scope="module")
def stack(stack_and_embeddings: tuple[ReplicaStack, SlowEmbeddings]) -> ReplicaStack:
    return stack_and_embeddings[0]


@pytest.fixture
async def account(stack: ReplicaStack) -> Account:
    return await create_account(stack.settings)


@pytest.fixture
async def client(stack: ReplicaStack, account: Account) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client(account) as http:
        yield http


async def upload_and_parse(client: httpx.AsyncClient, text: str = TEXT) -> tuple[str, str]:
    created = await client.post(
        "/api/v1/datasets", json={"name": "lakes", "parser_config": {"chunk_token_num": 16}}
    )
    assert created.status_code in (200, 201), created.text
    dataset_id = created.json()["data"]["id"]
    uploaded = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart([("lakes.txt", text.encode())]),
        headers={"Content-Type": MULTIPART},
    )
    assert uploaded.status_code == 201, uploaded.text
    [document] = uploaded.json()["data"]
    parsed = await client.post(
        f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document["id"]]}
    )
    assert parsed.status_code == 200, parsed.text
    return dataset_id, document["id"]


async def document(client: httpx.AsyncClient, dataset_id: str, document_id: str) -> dict:
    response = await client.get(
        f"/api/v1/datasets/{dataset_id}/documents", params={"id": document_id}
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["docs"][0]


async def wait_done(client: httpx.AsyncClient, dataset_id: str, document_id: str) -> dict:
    deadline = time.monotonic() + 90
    while True:
        listed = await document(client, dataset_id, document_id)
        if listed["run"] in ("DONE", "FAIL", "CANCEL"):
            return listed
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.2)


async def sse_feed_until_done(stack: ReplicaStack, account: Account) -> list:
    received: list[Frame] = []
    async with (
        stack.client() as http,
        http.stream(
            "GET", "/api/v1/events", params={"access_token": account.access_token}
        ) as response,
    ):
        assert response.status_code == 200
        async with asyncio.timeout(90):
            async for frame in frames(response):
                if frame.id is None:
                    continue
                received.append(frame)
                if frame.event in TERMINAL_FEED_EVENTS:
                    return received
    raise AssertionError("the feed ended early")


async def ws_feed_until_done(stack: ReplicaStack, account: Account) -> list:
    url = f"{stack.ws_url}?access_token={account.access_token}"
    received: list[dict[str, Any]] = []
    async with websockets.connect(url, ssl=stack.ssl_context()) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT))["type"] == "ready"
        await ws.send(json.dumps({"type": "subscribe_feed"}))
        async with asyncio.timeout(90):
            while True:
                message = json.loads(await ws.recv())
                received.append(message)
                if message["type"] in TERMINAL_FEED_EVENTS:
                    return received


async def test_upload_parse_and_watch_the_feed_through_both_replicas(
    stack: ReplicaStack, client: httpx.AsyncClient, account: Account
) -> None:
    # The account is new: the first document.done either feed shows is this document's.
    watchers = asyncio.gather(
        sse_feed_until_done(stack, account), ws_feed_until_done(stack, account)
    )
    await asyncio.sleep(1.0)  # both connected (each through its own replica)
    dataset_id, document_id = await upload_and_parse(client)
    sse_frames, ws_messages = await watchers
    assert sse_frames[-1].data["document_id"] == ws_messages[-1]["document_id"] == document_id
    assert sse_frames[-1].data["run"] == "DONE"
    assert ws_messages[-1]["run"] == "DONE"
    done = await wait_done(client, dataset_id, document_id)
    assert done["run"] == "DONE" and done["chunk_count"] > 1
    # Listed through each replica in turn: the same chunks from the shared stores.
    listings = []
    for _ in range(2):
        response = await client.get(
            f"/api/v1/datasets/{dataset_id}/documents/{document_id}/chunks",
            params={"page_size": 1000},
        )
        assert response.status_code == 200, response.text
        listings.append(sorted(chunk["id"] for chunk in response.json()["data"]["chunks"]))
    assert listings[0] == listings[1] and len(listings[0]) == done["chunk_count"]
    # The file itself, stored on S3 by one replica, downloads through either.
    for _ in range(2):
        download = await client.get(f"/api/v1/datasets/{dataset_id}/documents/{document_id}")
        assert download.status_code == 200 and download.content == TEXT.encode()


async def test_an_avatar_and_a_chat_image_stored_by_one_replica_are_read_by_the_other(
    client: httpx.AsyncClient,
) -> None:
    stored = await client.put(
        "/api/v1/users/me/avatar",
        content=image_bytes("PNG", (64, 64)),
        headers={"Content-Type": "image/png"},
    )
    assert stored.status_code == 200, stored.text
    avatars = [(await client.get("/api/v1/users/me/avatar")) for _ in range(2)]
    assert [a.status_code for a in avatars] == [200, 200]
    assert avatars[0].content == avatars[1].content and avatars[0].content[:2] == b"\xff\xd8"
    upload = await client.post(
        "/api/v1/uploads",
        files={"file": ("photo.png", image_bytes("PNG", (32, 32)), "image/png")},
    )
    assert upload.status_code in (200, 201), upload.text
    upload_id = upload.json()["data"]["id"]
    images = [(await client.get(f"/api/v1/uploads/{upload_id}")) for _ in range(2)]
    assert [i.status_code for i in images] == [200, 200]
    assert images[0].content == images[1].content == image_bytes("PNG", (32, 32))


async def test_sessions_api_keys_and_rate_limits_are_the_same_on_every_replica(
    stack: ReplicaStack, account: Account, client: httpx.AsyncClient
) -> None:
    async with stack.client() as anonymous:
        logged_in = await anonymous.post(
            "/api/v1/session/oauth2/token",
            data={"username": account.username, "password": account.password},
        )
        assert logged_in.status_code == 200, logged_in.text
        token = logged_in.json()["access_token"]
        me = [
            await anonymous.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            for _ in range(4)
        ]
        assert [r.status_code for r in me] == [200] * 4
    created = await client.post("/api/v1/users/me/api-keys", json={"name": "replicas"})
    assert created.status_code in (200, 201), created.text
    key = created.json()["data"]
    async with stack.client() as anonymous:
        auth = {"Authorization": f"Bearer {key['key']}"}
        assert [
            (await anonymous.get("/api/v1/users/me", headers=auth)).status_code for _ in range(4)
        ] == [200] * 4
        deleted = await client.delete(f"/api/v1/users/me/api-keys/{key['id']}")
        assert deleted.status_code == 200, deleted.text
        assert [
            (await anonymous.get("/api/v1/users/me", headers=auth)).status_code for _ in range(4)
        ] == [401] * 4
        # Failed logins are counted in Redis: the limit holds across replicas.
        limit = stack.settings.login_max_failures
        statuses = [
            (
                await anonymous.post(
                    "/api/v1/session/oauth2/token",
                    data={"username": account.username, "password": "wrong password!"},
                )
            ).status_code
            for _ in range(limit + 2)
        ]
        assert statuses[:limit] == [401] * limit and statuses[limit:] == [429, 429], statuses


async def rag_session(client: httpx.AsyncClient, dataset_id: str) -> str:
    body = {
        "name": "kb",
        "dataset_ids": [dataset_id],
        "llm": {"model_name": SLOW},
        "prompt": {"similarity_threshold": 0.0},
    }
    chat = await client.post("/api/v1/chats", json=body)
    assert chat.status_code == 201, chat.text
    session = await client.post(
        f"/api/v1/chats/{chat.json()['data']['id']}/sessions", json={"name": "s"}
    )
    assert session.status_code in (200, 201), session.text
    return session.json()["data"]["id"]


async def test_a_rag_answer_cut_by_a_killed_replica_resumes_through_the_other(
    stack: ReplicaStack, client: httpx.AsyncClient, account: Account
) -> None:
    dataset_id, document_id = await upload_and_parse(client)
    assert (await wait_done(client, dataset_id, document_id))["run"] == "DONE"
    session_id = await rag_session(client, dataset_id)
    first: list[Frame] = []
    body = {"session_id": session_id, "question": "Where does Quillon nest?", "stream": True}
    async with (
        stack.client(account) as http,
        http.stream("POST", "/api/v1/tasks", json=body) as response,
    ):
        assert response.status_code == 200
        task_id = response.headers["X-Task-ID"]
        async for frame in events(response):
            first.append(frame)
            if sum(f.event == "token" for f in first) >= 5:
                break
        # Whichever replica serves this stream, one of them dies now: the connection is
        # then cut (here, by us), and nginx can only reach the survivor.
        stack.kill(stack.webs[0].server)
    rest: list[Frame] = []
    async with (
        stack.client(account) as http,
        http.stream(
            "GET", f"/api/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": first[-1].id}
        ) as response,
    ):
        assert response.status_code == 200, await response.aread()
        async with asyncio.timeout(60):
            async for frame in events(response):
                rest.append(frame)
                if frame.terminal:
                    break
    ids = [f.id for f in first + rest]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert rest[-1].event == "done", rest[-1]
    text = "".join(f.data["delta"] for f in first + rest if f.event == "token")
    stored = await Message.get(id=rest[-1].data["message_id"])
    assert stored.content[0]["text"] == text
    await restart_web(stack, 0)


async def restart_web(stack: ReplicaStack, index: int) -> None:
    """The killed replica comes back on its port (nginx's upstream list is fixed)."""
    from tests.support.live_server import start_hypercorn

    old = stack.webs[index]
    stack.webs[index] = await start_hypercorn(old.settings, stack.root, port=old.port)


async def test_an_ingest_worker_killed_mid_document_is_replaced_by_the_other(
    stack_and_embeddings: tuple[ReplicaStack, SlowEmbeddings], client: httpx.AsyncClient
) -> None:
    stack, embeddings = stack_and_embeddings
    survivor, victim = stack.ingest_workers
    survivor.signal(signal.SIGSTOP)  # only the victim can take the document
    embeddings.delay = 0.3
    try:
        dataset_id, document_id = await upload_and_parse(client)
        deadline = time.monotonic() + 30
        while (await document(client, dataset_id, document_id))["progress"] <= 0.1:
            assert time.monotonic() < deadline, "the document never started"
            await asyncio.sleep(0.1)
        stack.kill(victim)
    finally:
        survivor.signal(signal.SIGCONT)
    embeddings.delay = 0.0
    done = await wait_done(client, dataset_id, document_id)
    assert done["run"] == "DONE", done
    chunks = await client.get(
        f"/api/v1/datasets/{dataset_id}/documents/{document_id}/chunks", params={"page_size": 1000}
    )
    contents = [chunk["content"] for chunk in chunks.json()["data"]["chunks"]]
    assert len(contents) == done["chunk_count"] == len(set(contents)), "chunks lost or doubled"
    replacement = stack.process_settings(f"ingest-{len(stack.data_dirs)}")
    stack.ingest_workers[1] = await start_ingest_worker(replacement, stack.root)


def test_no_process_wrote_to_its_own_data_dir(stack: ReplicaStack) -> None:
    """Everything a replica keeps is in the shared services: each DATA_DIR stayed empty."""
    assert len(stack.data_dirs) >= 6
    written = {str(d): sorted(p.name for p in d.iterdir()) for d in stack.data_dirs}
    assert all(not names for names in written.values()), written
