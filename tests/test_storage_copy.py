"""`python -m backend storage copy --to s3://...`: an install's files move to a bucket;
re-running copies only what is missing (idempotent, resumable), with progress shown."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from backend.settings import Settings
from backend.storage.configured import make_storage
from tests.support.s3_server import s3_server_or_skip, wait_for_bucket

pytestmark = pytest.mark.sqlite_only
ROOT = Path(__file__).resolve().parents[1]


def run_copy(data_dir: Path, env: dict[str, str], target: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backend", "storage", "copy", "--to", target],
        cwd=data_dir.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_copy_moves_every_file_once(settings: Settings, tmp_path: Path) -> None:
    server = s3_server_or_skip()
    await wait_for_bucket(server, settings)
    data_dir = tmp_path / "data"
    local = make_storage(settings, f"file://{data_dir}")
    files = {
        "documents/ds1/d1.pdf": b"%PDF-1.4 " + os.urandom(300_000),
        "uploads/u1.png": b"png bytes",
        "avatars/42.jpg": b"jpeg bytes",
    }
    for key, data in files.items():
        await local.write_bytes(key, data)
    (data_dir / "sluice.sqlite3").write_bytes(b"not a stored file")
    (data_dir / "documents" / "ds1" / "d2.pdf.1234abcd.part").write_bytes(b"half")

    target = f"s3://{server.bucket}/copy-{uuid.uuid4().hex[:8]}"
    env = {
        "S3_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
    }
    first = run_copy(data_dir, env, target)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "3/3 files: 3 copied" in first.stdout
    assert f"STORAGE_URL={target}" in first.stdout

    bucket = make_storage(settings.model_copy(update={"s3_endpoint_url": server.endpoint_url,
        "aws_access_key_id": server.access_key, "aws_secret_access_key": server.secret_key}),
        target)  # fmt: skip
    try:
        assert [item.key async for item in bucket.listing()] == sorted(files)
        for key, data in files.items():
            assert await bucket.read_bytes(key) == data

        again = run_copy(data_dir, env, target)
        assert (
            again.returncode == 0
            and "0 copied" in again.stdout
            and "3 already there" in again.stdout
        )

        # An interrupted copy resumes: only what the bucket lacks goes up.
        await bucket.delete("uploads/u1.png")
        await local.write_bytes("documents/ds1/d3.md", b"# new")
        resumed = run_copy(data_dir, env, target)
        assert "4/4 files: 2 copied" in resumed.stdout and "2 already there" in resumed.stdout
        assert await bucket.read_bytes("uploads/u1.png") == b"png bytes"
    finally:
        await bucket.close()

    refused = run_copy(data_dir, {**env, "AWS_SECRET_ACCESS_KEY": "wrong"}, target)
    assert refused.returncode == 1 and "access denied" in refused.stdout
