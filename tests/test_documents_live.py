"""Document uploads over real sockets to Hypercorn: limits refuse a body as it streams,
a client that hangs up mid-file leaves nothing behind, downloads carry the file's headers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.models import Document
from tests.support.accounts import Account, create_account
from tests.support.knowledge import BOUNDARY, MULTIPART, PDF, multipart
from tests.support.live_server import LiveServer
from tests.support.raw_http import repeated, send_request

MB = 1024 * 1024


@pytest.fixture
async def live_account(live_processes: LiveServer) -> Account:
    return await create_account(live_processes.settings, password=False)


async def live_dataset(server: LiveServer, account: Account) -> str:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post(
            "/api/v1/datasets",
            json={"name": f"live-{time.monotonic_ns()}"},
            headers={"Authorization": f"Bearer {account.access_token}"},
        )
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


def file_part(name: str, size: int) -> Iterator[bytes]:
    """A multipart body with one `file` part of `size` bytes of text, streamed."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    yield from repeated(b"some text\n", size)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def leftovers(server: LiveServer, dataset_id: str) -> list[Path]:
    directory = server.settings.documents_dir / dataset_id
    return list(directory.iterdir()) if directory.exists() else []


async def test_a_file_over_its_limit_is_refused_while_it_streams(
    live_processes: LiveServer, live_account: Account
) -> None:
    dataset_id = await live_dataset(live_processes, live_account)
    limit = live_processes.settings.document_max_bytes
    response = await send_request(
        live_processes.port,
        "POST",
        f"/api/v1/datasets/{dataset_id}/documents",
        file_part("huge.txt", 4 * limit),
        headers={"Content-Type": MULTIPART, **live_account.headers},
    )
    assert response.status == 413, response.body[:300]
    message = response.json()["message"]
    assert "huge.txt" in message and str(limit) in message
    # Refused at the limit, not after the whole body (the socket buffers some more).
    assert response.sent < 2 * limit
    assert leftovers(live_processes, dataset_id) == []
    assert not await Document.filter(dataset_id=dataset_id).exists()


async def test_an_upload_over_the_request_limit_is_refused_from_its_length(
    live_processes: LiveServer, live_account: Account
) -> None:
    dataset_id = await live_dataset(live_processes, live_account)
    size = 4 * live_processes.settings.max_body_bytes
    response = await send_request(
        live_processes.port,
        "POST",
        f"/api/v1/datasets/{dataset_id}/documents",
        file_part("a.txt", size),
        headers={"Content-Type": MULTIPART, **live_account.headers},
        content_length=size + 200,
    )
    assert response.status == 413
    assert response.sent < size // 2


async def test_a_client_hanging_up_mid_file_leaves_nothing(
    live_processes: LiveServer, live_account: Account
) -> None:
    dataset_id = await live_dataset(live_processes, live_account)
    reader, writer = await asyncio.open_connection("127.0.0.1", live_processes.port)
    head = (
        f"POST /api/v1/datasets/{dataset_id}/documents HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nContent-Type: {MULTIPART}\r\n"
        f"Authorization: Bearer {live_account.access_token}\r\n"
        f"Content-Length: {10 * MB}\r\n\r\n"
    )
    writer.write(head.encode())
    body = file_part("first.txt", 1000)
    writer.write(b"".join(list(body)[:-1]) + b"\r\n")  # one whole file, then a second begun
    for piece in file_part("second.txt", 2 * MB):
        writer.write(piece)
        await writer.drain()
        if piece.startswith(b"some"):
            break
    for _ in range(20):
        writer.write(b"some text\n" * 10_000)
        await writer.drain()
    writer.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if not leftovers(live_processes, dataset_id):
            break
    assert leftovers(live_processes, dataset_id) == []
    assert not await Document.filter(dataset_id=dataset_id).exists()
    # The server is fine and takes the next upload.
    async with httpx.AsyncClient(base_url=live_processes.base_url) as http:
        response = await http.post(
            f"/api/v1/datasets/{dataset_id}/documents",
            content=multipart([("after.pdf", PDF)]),
            headers={"Content-Type": MULTIPART, **live_account.headers},
        )
    assert response.status_code == 201, response.text
    del reader


async def test_download_over_http(live_processes: LiveServer, live_account: Account) -> None:
    dataset_id = await live_dataset(live_processes, live_account)
    async with httpx.AsyncClient(base_url=live_processes.base_url) as http:
        uploaded = await http.post(
            f"/api/v1/datasets/{dataset_id}/documents",
            content=multipart([("Ünïcode paper.pdf", PDF)]),
            headers={"Content-Type": MULTIPART, **live_account.headers},
        )
        [document] = uploaded.json()["data"]
        response = await http.get(
            f"/api/v1/datasets/{dataset_id}/documents/{document['id']}",
            headers=live_account.headers,
        )
    assert response.status_code == 200
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-length"] == str(len(PDF))
    disposition = response.headers["content-disposition"]
    assert disposition == (
        "attachment; filename=\"Unicode paper.pdf\"; filename*=UTF-8''%C3%9Cn%C3%AFcode%20paper.pdf"
    )
