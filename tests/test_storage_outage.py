"""File storage going away under live processes: a web process whose S3 is switched off
and on (readiness names storage, requests get a 503 naming it, both recover without a
restart), S3 lost in the middle of a multipart upload (no half file, no document), and a
process started with refused credentials (it runs, logs why, /readyz names storage).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from quart import Quart

from backend.models import Document
from backend.settings import Settings
from backend.storage.configured import make_storage
from tests.support.accounts import create_account
from tests.support.images import image_bytes
from tests.support.knowledge import BOUNDARY, MULTIPART, multipart
from tests.support.live_server import LiveServer, free_port, spawn, start_hypercorn
from tests.support.raw_http import repeated, send_request
from tests.support.s3_server import S3Server, s3_server_or_skip, wait_for_bucket
from tests.support.tcp_switch import TcpSwitch

pytestmark = pytest.mark.sqlite_only
MIB = 1024 * 1024


@pytest.fixture(scope="module")
async def s3(settings: Settings) -> S3Server:
    server = s3_server_or_skip()
    await wait_for_bucket(server, settings)
    return server


def file_part(name: str, size: int) -> Iterator[bytes]:
    """A multipart body with one text `file` part of `size` bytes, streamed."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    yield from repeated(b"some text\n", size)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.fixture(scope="module")
async def switched(
    app: Quart, s3: S3Server, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple]:
    """A web process whose S3 is reached through a switch the test turns off and on."""
    switch = TcpSwitch(int(s3.endpoint_url.rsplit(":", 1)[1]))
    await switch.on()
    served = s3.settings(
        settings,
        s3_endpoint_url=f"http://127.0.0.1:{switch.port}",
        s3_timeout_seconds=3.0,
        redis_prefix=f"storage-{uuid.uuid4().hex[:8]}",
        admin_username="",
        admin_password="",
    )
    server = await start_hypercorn(served, tmp_path_factory.mktemp("switched"))
    try:
        yield server, switch
    finally:
        server.server.stop()
        await switch.off()


async def test_storage_down_is_a_503_naming_it_and_recovers(switched: tuple) -> None:
    server: LiveServer
    server, switch = switched
    account = await create_account(server.settings, password=False)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=account.headers, timeout=60
    ) as http:
        dataset = await http.post("/api/v1/datasets", json={"name": "down"})
        dataset_id = dataset.json()["data"]["id"]
        upload = f"/api/v1/datasets/{dataset_id}/documents"
        body = multipart([("a.txt", b"hello")])

        await switch.off()
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and "storage" in ready.text, ready.text
        began = time.monotonic()
        refused = await http.post(upload, content=body, headers={"Content-Type": MULTIPART})
        assert refused.status_code == 503, refused.text
        # botocore's own retries (3 tries, backoff), for the write and the clean-up.
        assert time.monotonic() - began < 20
        assert "File storage (s3://" in refused.json()["message"]
        png = image_bytes()
        image = await http.post("/api/v1/uploads", files={"file": ("a.png", png, "image/png")})
        assert image.status_code == 503, image.text

        await switch.on()
        assert (await http.get("/readyz")).status_code == 200
        stored = await http.post(upload, content=body, headers={"Content-Type": MULTIPART})
        assert stored.status_code == 201, stored.text


async def test_storage_lost_mid_upload_leaves_no_half_file(switched: tuple) -> None:
    server: LiveServer
    server, switch = switched
    account = await create_account(server.settings, password=False)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=account.headers, timeout=60
    ) as http:
        dataset = await http.post("/api/v1/datasets", json={"name": "mid-upload"})
        dataset_id = dataset.json()["data"]["id"]
        switch.budget = 6 * MIB  # the first 5 MiB part goes up, the second never arrives
        # A raw client: the 503 may come while the body is still being sent.
        response = await send_request(
            server.port,
            "POST",
            f"/api/v1/datasets/{dataset_id}/documents",
            file_part("big.txt", 12 * MIB),
            headers={"Content-Type": MULTIPART, **account.headers},
        )
        assert response.status == 503, response.body[:300]
        assert "File storage (s3://" in response.json()["message"]
        switch.budget = None
        await switch.on()
    assert not await Document.filter(dataset_id=dataset_id).exists()
    storage = make_storage(server.settings)
    try:
        assert [item.key async for item in storage.listing(f"documents/{dataset_id}")] == []
        client = await storage.connection.client()  # type: ignore[attr-defined]
        location = storage.connection.location  # type: ignore[attr-defined]
        listed = await client.list_multipart_uploads(Bucket=location.bucket, Prefix=location.prefix)
        # The abort could not reach S3 while it was gone: the parts stay invisible, and
        # no object (nothing a reader could take for the file) exists.
        assert all(
            upload["Key"].startswith(location.prefix) for upload in listed.get("Uploads", [])
        )
    finally:
        await storage.close()


async def test_refused_credentials_at_start_are_a_clear_readiness_error(
    app: Quart, s3: S3Server, settings: Settings, tmp_path: Path
) -> None:
    """The process starts anyway (no crash loop), logs why, and /readyz names storage."""
    refused = s3.settings(
        settings,
        aws_secret_access_key="not-the-secret",
        redis_prefix=f"storage-{uuid.uuid4().hex[:8]}",
        admin_username="",
        admin_password="",
    )
    port = free_port()
    args = [sys.executable, "-m", "hypercorn", "backend.asgi:app", "--bind", f"127.0.0.1:{port}"]
    server = spawn(f"hypercorn-{port}", args, refused, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                assert server.process.poll() is None, server.log_tail()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, server.log_tail()
                await asyncio.sleep(0.2)
            ready = await http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert "storage (File storage (s3://" in ready.text and "access denied" in ready.text
        assert "access denied" in server.log_tail()
    finally:
        server.stop()
