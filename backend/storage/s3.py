"""File storage in an S3-compatible bucket: what several machines share.

Every call goes through aiobotocore (signed by botocore); failures become the storage
errors of `base` (a 503 naming the bucket, never a 500). Writes stream (`s3_writer`),
reads come in chunks with HTTP ranges, and parsers that need a path get a temporary
copy outside DATA_DIR, so no code path touches DATA_DIR when STORAGE_URL is S3.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import BinaryIO

import aiofiles
from botocore.exceptions import ClientError

from backend.storage.base import READ_CHUNK_BYTES, StorageUnavailable, StoredObject, check_key
from backend.storage.ranged_file import ranged_file
from backend.storage.s3_client import S3Connection, S3Location, error_code, s3_errors
from backend.storage.s3_writer import S3Writer, s3_writing

DELETE_BATCH = 1000


class S3FileStorage:
    def __init__(self, location: S3Location, part_size: int) -> None:
        self.location = location
        self.connection = S3Connection(location)
        self.part_size = part_size

    @property
    def description(self) -> str:
        return self.location.description

    def writing(self, key: str) -> AbstractAsyncContextManager[S3Writer]:
        check_key(key)
        return s3_writing(self.connection, key, self.part_size)

    async def write_bytes(self, key: str, data: bytes) -> None:
        async with self.writing(key) as writer:
            await writer.write(data)

    async def read_chunks(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        check_key(key)
        if end is not None and end <= start:
            return
        client = await self.connection.client()
        ranged = {}
        if start or end is not None:
            ranged["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            async with s3_errors(self.location, key, "read"):
                response = await client.get_object(
                    Bucket=self.location.bucket, Key=self.location.object_key(key), **ranged
                )
        except StorageUnavailable as error:
            if isinstance(error.__cause__, ClientError) and error_code(error.__cause__) in (
                "InvalidRange",
                "416",
            ):
                return  # a range starting at or past the end: nothing to read
            raise
        body = response["Body"]
        try:
            while True:
                async with s3_errors(self.location, key, "read"):
                    chunk = await body.read(READ_CHUNK_BYTES)
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def read_bytes(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.read_chunks(key)])

    @contextlib.asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        """A temporary copy (under TMPDIR, never DATA_DIR), written chunk by chunk. For
        a key that is not stored the path does not exist, as with the local form, so a
        parser reports the file missing the same way on both."""
        name = check_key(key)[-1]
        with tempfile.TemporaryDirectory(prefix="sluice-storage-") as folder:
            path = Path(folder) / name
            try:
                async with aiofiles.open(path, "wb") as handle:
                    async for chunk in self.read_chunks(key):
                        await handle.write(chunk)
            except FileNotFoundError:
                path.unlink(missing_ok=True)
            yield path

    @contextlib.asynccontextmanager
    async def seekable(self, key: str) -> AsyncIterator[BinaryIO]:
        size = await self.size(key)
        if size is None:
            raise FileNotFoundError(key)
        loop = asyncio.get_running_loop()
        with ranged_file(self, key, size, loop) as handle:
            yield handle

    async def size(self, key: str) -> int | None:
        check_key(key)
        client = await self.connection.client()
        try:
            async with s3_errors(self.location, key, "read"):
                head = await client.head_object(
                    Bucket=self.location.bucket, Key=self.location.object_key(key)
                )
        except FileNotFoundError:
            return None
        return int(head["ContentLength"])

    async def exists(self, key: str) -> bool:
        return await self.size(key) is not None

    async def delete(self, key: str) -> None:
        check_key(key)
        client = await self.connection.client()
        async with s3_errors(self.location, key, "delete"):
            await client.delete_object(
                Bucket=self.location.bucket, Key=self.location.object_key(key)
            )

    async def delete_prefix(self, prefix: str) -> None:
        if len(check_key(prefix)) < 2:
            raise ValueError(f"Not a storage prefix: {prefix!r}")
        keys = [stored.key async for stored in self.listing(prefix)]
        client = await self.connection.client()
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            objects = [{"Key": self.location.object_key(key)} for key in batch]
            async with s3_errors(self.location, prefix, "delete"):
                await client.delete_objects(
                    Bucket=self.location.bucket, Delete={"Objects": objects, "Quiet": True}
                )

    async def listing(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        if prefix:
            check_key(prefix)
        folder = self.location.object_key(prefix) + "/" if prefix else ""
        if not prefix and self.location.prefix:
            folder = self.location.prefix + "/"
        client = await self.connection.client()
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=folder
        )
        async with s3_errors(self.location, prefix, "list"):
            async for page in pages:
                for item in page.get("Contents", []):
                    yield StoredObject(self.location.storage_key(item["Key"]), int(item["Size"]))

    async def check(self) -> None:
        """The bucket exists and the credentials may use it (HEAD bucket)."""
        client = await self.connection.client()
        async with s3_errors(self.location, "", "check"):
            await client.head_bucket(Bucket=self.location.bucket)

    async def close(self) -> None:
        await self.connection.close()
