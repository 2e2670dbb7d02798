"""The S3 connection: where (bucket, prefix, endpoint), who (credentials), and the
aiobotocore client made from it, plus the mapping of S3's failures to storage errors.

aiobotocore (botocore's requests, signed by botocore, over aiohttp) was chosen over
obstore and OpenDAL for the explicit multipart calls: Sluice decides when a part is
sent and aborts the upload itself when a request fails, so the all-or-nothing rule is
Sluice's code, not a library default (the README's Storage section has the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from backend.metrics.instruments import STORAGE_ERRORS
from backend.storage.base import StorageUnavailable, unavailable

MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
REFUSED_CODES = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}
)
NO_BUCKET_CODES = frozenset({"NoSuchBucket"})


@dataclass(frozen=True)
class S3Location:
    """Where and how to reach the bucket; credentials left empty come from botocore's
    usual chain (the AWS_* variables, ~/.aws, an instance role)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""
    session_token: str = ""
    timeout_seconds: float = 30.0

    @property
    def description(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def storage_key(self, object_key: str) -> str:
        return object_key[len(self.prefix) + 1 :] if self.prefix else object_key

    def client_options(self) -> dict[str, Any]:
        config = AioConfig(
            connect_timeout=min(5.0, self.timeout_seconds),
            read_timeout=self.timeout_seconds,
            retries={"max_attempts": 3, "mode": "standard"},
            # Path-style for an endpoint of one's own (SeaweedFS, MinIO, an IP address).
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            # Checksums only where S3 requires them: S3-compatible stores differ here.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        options: dict[str, Any] = {"config": config, "region_name": self.region or "us-east-1"}
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.access_key_id:
            options["aws_access_key_id"] = self.access_key_id
            options["aws_secret_access_key"] = self.secret_access_key
            if self.session_token:
                options["aws_session_token"] = self.session_token
        return options


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def refusal(location: S3Location, error: ClientError) -> StorageUnavailable:
    code = error_code(error)
    if code in NO_BUCKET_CODES or (code == "404" and error.operation_name == "HeadBucket"):
        return unavailable(location.description, f"the bucket '{location.bucket}' does not exist")
    if code in REFUSED_CODES:
        return unavailable(
            location.description,
            f"access denied ({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    return unavailable(location.description, f"{error.operation_name} failed ({code})")


@contextlib.asynccontextmanager
async def s3_errors(
    location: S3Location, key: str = "", operation: str = "read"
) -> AsyncIterator[None]:
    """S3's failures as storage errors, counted by `operation` (write, read, delete,
    list, check); a missing object as FileNotFoundError."""
    try:
        yield
    except ClientError as error:
        if error_code(error) in MISSING_CODES and error.operation_name != "HeadBucket":
            raise FileNotFoundError(key) from error
        STORAGE_ERRORS.labels("s3", operation).inc()
        raise refusal(location, error) from error
    except (BotoCoreError, aiohttp.ClientError, TimeoutError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        STORAGE_ERRORS.labels("s3", operation).inc()
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise unavailable(
            location.description, f"unreachable ({type(error).__name__}: {reason})"
        ) from error


class S3Connection:
    """One aiobotocore client per event loop, made on first use (a client's aiohttp
    session belongs to the loop it was made in)."""

    def __init__(self, location: S3Location) -> None:
        self.location = location
        self.clients: dict[asyncio.AbstractEventLoop, tuple[Any, contextlib.AsyncExitStack]] = {}
        self.locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    async def client(self) -> Any:
        loop = asyncio.get_running_loop()
        if loop in self.clients:
            return self.clients[loop][0]
        async with self.locks.setdefault(loop, asyncio.Lock()):
            if loop not in self.clients:
                stack = contextlib.AsyncExitStack()
                try:
                    creator = get_session().create_client("s3", **self.location.client_options())
                    self.clients[loop] = (await stack.enter_async_context(creator), stack)
                except (ValueError, BotoCoreError) as error:  # e.g. an endpoint without scheme
                    STORAGE_ERRORS.labels("s3", "check").inc()
                    raise unavailable(
                        self.location.description, f"no S3 client can be made: {error}"
                    ) from error
        return self.clients[loop][0]

    async def close(self) -> None:
        """Closes the client of the running loop (clients of other loops die with them)."""
        loop = asyncio.get_running_loop()
        entry = self.clients.pop(loop, None)
        self.locks.pop(loop, None)
        if entry is not None:
            await entry[1].aclose()
