"""When the file storage fails: a clear error naming it (503, or 507 for a full disk),
never a 500, never a half-stored file; readiness names it while it is down and recovers
by itself when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from quart import Quart

from backend.models import Document
from backend.settings import Settings
from backend.storage.base import StorageFull, StorageUnavailable
from backend.storage.configured import make_storage, storage_problem
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


def storage_errors(backend: str, operation: str) -> float:
    """The sluice_storage_errors counter's value in this process."""
    labels = {"backend": backend, "operation": operation}
    return REGISTRY.get_sample_value("sluice_storage_errors_total", labels) or 0.0


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aws_secret_access_key": "not-the-secret"}, "access denied"),
        ({"storage_url": "s3://no-such-bucket-for-sluice/x"}, "does not exist"),
        ({"s3_endpoint_url": f"http://127.0.0.1:{closed_port()}"}, "unreachable"),
    ],
)
async def test_a_storage_that_refuses_or_is_gone_is_named(
    s3: S3Server, settings: Settings, changes: dict, reason: str
) -> None:
    broken = s3.settings(settings, s3_timeout_seconds=2.0, **changes)
    storage = make_storage(broken)
    counted = storage_errors("s3", "check")
    try:
        with pytest.raises(StorageUnavailable, match=reason) as caught:
            await storage.check()
        assert storage_errors("s3", "check") == counted + 1
        assert caught.value.status == 503
        assert "File storage (s3://" in caught.value.message
        if reason != "unreachable":  # (botocore's retries make each try take seconds)
            with pytest.raises(StorageUnavailable, match=reason):
                await storage.write_bytes("uploads/x.png", b"png")
            with pytest.raises(StorageUnavailable, match=reason):
                await storage.read_bytes("uploads/x.png")
    finally:
        await storage.close()
    # Readiness says the same (or, when botocore's retries outlast its wait, that the
    # storage did not answer in time), naming the storage either way.
    problem = await storage_problem(broken)
    assert problem is not None and problem.startswith("File storage (s3://")
    assert reason in problem or "did not answer" in problem


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A small in-memory file system at `path` (root only; skipped elsewhere)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_full_disk_is_a_507_and_leaves_nothing(settings: Settings, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=1m") as root:
        storage = make_storage(settings, f"file://{root}")
        counted = storage_errors("local", "write")
        with pytest.raises(StorageFull) as caught:
            async with storage.writing("documents/d1/big.txt") as writer:
                for _ in range(4):
                    await writer.write(b"x" * 512 * 1024)
        assert caught.value.status == 507 and "full" in caught.value.message
        assert storage_errors("local", "write") == counted + 1
        assert not any(path.is_file() for path in root.rglob("*"))
        await storage.write_bytes("documents/d1/small.txt", b"fits")  # space came back


async def test_a_read_only_disk_is_a_503(settings: Settings, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "ro,size=1m") as root:
        storage = make_storage(settings, f"file://{root}")
        with pytest.raises(StorageUnavailable, match="Read-only") as caught:
            await storage.write_bytes("uploads/a.png", b"png")
        assert caught.value.status == 503
        with pytest.raises(StorageUnavailable, match="not writable"):
            await storage.check()


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
