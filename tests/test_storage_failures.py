"""When the file storage fails: a clear error naming it (503, or 507 for a full disk),
never a 500, never a half-stored file, and the failure counted. Under live processes:
tests/test_storage_outage.py.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from backend.settings import Settings
from backend.storage.base import StorageFull, StorageUnavailable
from backend.storage.configured import make_storage, storage_problem
from tests.support.s3_server import S3Server, s3_server_or_skip, wait_for_bucket

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
        ({"s3_endpoint_url": "127.0.0.1:9000"}, "no S3 client can be made"),
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
