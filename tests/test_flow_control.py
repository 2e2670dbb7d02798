"""A route streaming a request body holds at most about HIGH_WATER_BYTES of it in memory,
however much faster the client sends than the route consumes; and the upload route
streams a large body to storage over a real socket."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from quart import Quart, request

from backend.http.flow_control import (
    HIGH_WATER_BYTES,
    FlowControlledBody,
    FlowControlledConnection,
)
from backend.models import Document
from tests.support.accounts import create_account
from tests.support.knowledge import MULTIPART, multipart
from tests.support.live_server import LiveServer

MESSAGE_BYTES = 64 * 1024
MESSAGES = 160  # 10 MiB


def streaming_app() -> tuple[Quart, list[int]]:
    """An app whose route reads its body slowly, recording how much each read returned."""
    app = Quart(__name__)
    app.asgi_http_class = FlowControlledConnection

    class Request(app.request_class):  # type: ignore[name-defined, misc]
        body_class = FlowControlledBody

    app.request_class = Request
    reads: list[int] = []

    @app.post("/slow")
    async def slow() -> str:
        async for chunk in request.body:
            reads.append(len(chunk))
            await asyncio.sleep(0.002)
        return "ok"

    return app, reads


async def call(app: Quart) -> int:
    """POST MESSAGES body messages as fast as the app asks for them; the status."""
    sent = 0
    status: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent += 1
        if sent > MESSAGES:
            await asyncio.sleep(3600)  # a client that has nothing more to say
        return {"type": "http.request", "body": b"x" * MESSAGE_BYTES, "more_body": sent < MESSAGES}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status["status"] = message["status"]

    scope = {
        "type": "http",
        "http_version": "1.1",
        "asgi": {"spec_version": "2.3"},
        "method": "POST",
        "scheme": "http",
        "path": "/slow",
        "raw_path": b"/slow",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "extensions": {},
    }
    await asyncio.wait_for(app(scope, receive, send), 60)
    return status["status"]


async def test_a_streamed_body_is_read_no_faster_than_the_route_takes_it() -> None:
    app, reads = streaming_app()
    status = await call(app)
    assert status == 200
    assert sum(reads) == MESSAGES * MESSAGE_BYTES
    # Without flow control the slow route's reads come back megabytes at a time.
    assert max(reads) <= HIGH_WATER_BYTES + MESSAGE_BYTES


async def test_a_large_upload_streams_to_storage_over_a_socket(
    live_processes: LiveServer,
) -> None:
    settings = live_processes.settings
    account = await create_account(settings, password=False)
    async with httpx.AsyncClient(base_url=live_processes.base_url, timeout=60) as http:
        created = await http.post(
            "/api/v1/datasets",
            json={"name": "big"},
            headers={"Authorization": f"Bearer {account.access_token}"},
        )
        dataset_id = created.json()["data"]["id"]
        content = b"line of text\n" * (settings.document_max_bytes // 26)
        body = multipart([("big.txt", content)])

        async def chunks():
            for start in range(0, len(body), 256 * 1024):
                yield body[start : start + 256 * 1024]

        response = await http.post(
            f"/api/v1/datasets/{dataset_id}/documents",
            content=chunks(),
            headers={"Authorization": f"Bearer {account.access_token}", "Content-Type": MULTIPART},
        )
    assert response.status_code == 201, response.text
    [document] = response.json()["data"]
    assert document["size"] == len(content)
    stored = settings.documents_dir / document["location"]
    assert stored.read_bytes() == content
    assert await Document.filter(id=document["id"]).exists()
