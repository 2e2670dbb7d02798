"""The S3 server the storage tests use: the private SeaweedFS that scripts/test.sh starts
(TEST_S3_ENDPOINT_URL, TEST_S3_BUCKET, TEST_S3_ACCESS_KEY, TEST_S3_SECRET_KEY).

Without one the S3 tests skip, saying why; in CI test.sh refuses to run without it.
Each test gets its own prefix in the bucket, so tests never see each other's files.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from backend.settings import Settings
from backend.storage.base import StorageUnavailable
from backend.storage.configured import make_storage

READY_WITHIN_SECONDS = 60.0


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str

    def settings(self, base: Settings, prefix: str | None = None, **changes: Any) -> Settings:
        """`base` storing its files under a fresh prefix of the test bucket."""
        prefix = prefix or f"test-{uuid.uuid4().hex[:12]}"
        update = {
            "storage_url": f"s3://{self.bucket}/{prefix}",
            "s3_endpoint_url": self.endpoint_url,
            "s3_region": "us-east-1",
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "s3_timeout_seconds": 10.0,
            **changes,
        }
        return base.model_copy(update=update)


def s3_server_or_skip() -> S3Server:
    endpoint = os.environ.get("TEST_S3_ENDPOINT_URL")
    if not endpoint:
        reason = os.environ.get("SLUICE_S3_UNAVAILABLE", "TEST_S3_ENDPOINT_URL is not set")
        pytest.skip(f"no S3 server: {reason}")
    return S3Server(
        endpoint_url=endpoint,
        bucket=os.environ.get("TEST_S3_BUCKET", "sluice-test"),
        access_key=os.environ.get("TEST_S3_ACCESS_KEY", ""),
        secret_key=os.environ.get("TEST_S3_SECRET_KEY", ""),
    )


async def wait_for_bucket(server: S3Server, settings: Settings) -> None:
    """SeaweedFS answers before its bucket is made: wait until HEAD bucket succeeds."""
    storage = make_storage(server.settings(settings))
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    try:
        while True:
            try:
                await storage.check()
                return
            except StorageUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await storage.close()
