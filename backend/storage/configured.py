"""The process's file storage, made from STORAGE_URL once and shared by every caller.

`file://` (or nothing: DATA_DIR) is a local directory; `s3://bucket/prefix` a bucket. A
storage that cannot be used does not stop the process: readiness (`storage_problem`)
names it, and each request that needs a file gets a 503 until it comes back.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from backend.service_urls import parse_storage_url
from backend.settings import Settings
from backend.storage.base import FileStorage, StorageUnavailable
from backend.storage.local import LocalFileStorage
from backend.storage.scoped import ScopedStorage

if TYPE_CHECKING:
    from backend.storage.s3_client import S3Location

log = logging.getLogger("sluice.storage")
MB = 1024 * 1024

_storages: dict[tuple[object, ...], FileStorage] = {}


def s3_location(settings: Settings, bucket: str, prefix: str) -> S3Location:
    from backend.storage.s3_client import S3Location

    return S3Location(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.aws_access_key_id,
        secret_access_key=settings.aws_secret_access_key,
        session_token=settings.aws_session_token,
        timeout_seconds=settings.s3_timeout_seconds,
    )


def make_storage(settings: Settings, url: str | None = None) -> FileStorage:
    """A new storage for `url` (STORAGE_URL by default); the caller closes it."""
    target = parse_storage_url(settings.storage_url if url is None else url, settings.data_dir)
    if isinstance(target, Path):
        return LocalFileStorage(target)
    # Imported here: botocore is loaded only by processes that store files on S3.
    from backend.storage.s3 import S3FileStorage

    return S3FileStorage(s3_location(settings, *target), settings.s3_part_size_mb * MB)


def config_key(settings: Settings) -> tuple[object, ...]:
    return (
        settings.storage_url,
        str(settings.data_dir.resolve()) if not settings.storage_url else "",
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.aws_access_key_id,
        settings.aws_secret_access_key,
        settings.s3_part_size_mb,
    )


def file_storage(settings: Settings) -> FileStorage:
    """The storage these settings name, made once per process."""
    key = config_key(settings)
    storage = _storages.get(key)
    if storage is None:
        storage = _storages[key] = make_storage(settings)
    return storage


def document_storage(settings: Settings) -> ScopedStorage:
    return ScopedStorage(file_storage(settings), "documents")


def upload_storage(settings: Settings) -> ScopedStorage:
    return ScopedStorage(file_storage(settings), "uploads")


def avatar_storage(settings: Settings) -> ScopedStorage:
    return ScopedStorage(file_storage(settings), "avatars")


async def storage_problem(settings: Settings, within: float = 5.0) -> str | None:
    """Why files cannot be stored right now (for readiness), or None."""
    storage = file_storage(settings)
    try:
        await asyncio.wait_for(storage.check(), within)
    except StorageUnavailable as error:
        return error.message
    except TimeoutError:
        return f"File storage ({storage.description}) did not answer within {within:g} s"
    return None


async def storage_probe(settings: Settings, within: float) -> None:
    """Readiness's probe: raises, naming the storage and why, while it is down."""
    problem = await storage_problem(settings, within)
    if problem:
        raise RuntimeError(problem)


async def check_storage_at_start(settings: Settings) -> None:
    """Logs, never raises: the process starts and readiness says what is wrong."""
    problem = await storage_problem(settings)
    if problem:
        log.error("%s (readiness reports it until it is fixed)", problem)


async def close_storage() -> None:
    """Closes the running loop's clients of every storage this process made."""
    for storage in list(_storages.values()):
        await storage.close()


def document_key(dataset_id: str, document_id: str, suffix: str) -> str:
    """A document's key inside the documents folder (its `location`)."""
    return f"{dataset_id}/{document_id}.{suffix}"
