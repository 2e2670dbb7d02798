"""Streaming a file into S3: one PUT when it fits in a part, a multipart upload above.

A write holds at most one part in memory (S3_PART_SIZE_MB). The object appears only
when the write completes (PUT, or CompleteMultipartUpload); a write that fails or is
cancelled aborts its multipart upload, so nothing half-written is ever visible. Should
even the abort fail (S3 gone), the parts stay invisible to every reader and listing;
a bucket lifecycle rule (AbortIncompleteMultipartUpload) reclaims them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from backend.storage.s3_client import S3Connection, s3_errors

log = logging.getLogger("sluice.storage")


class S3Writer:
    def __init__(self, connection: S3Connection, key: str, part_size: int) -> None:
        self.connection = connection
        self.location = connection.location
        self.key = key
        self.object_key = self.location.object_key(key)
        self.part_size = part_size
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.written = 0

    async def write(self, chunk: bytes) -> None:
        self.buffer.extend(chunk)
        self.written += len(chunk)
        while len(self.buffer) >= self.part_size:
            part = bytes(self.buffer[: self.part_size])
            del self.buffer[: self.part_size]
            await self.send_part(part)

    async def send_part(self, data: bytes) -> None:
        client = await self.connection.client()
        async with s3_errors(self.location, self.key, "write"):
            if self.upload_id is None:
                started = await client.create_multipart_upload(
                    Bucket=self.location.bucket, Key=self.object_key
                )
                self.upload_id = started["UploadId"]
            number = len(self.parts) + 1
            sent = await client.upload_part(
                Bucket=self.location.bucket,
                Key=self.object_key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
            )
        self.parts.append({"ETag": sent["ETag"], "PartNumber": number})

    async def finish(self) -> None:
        client = await self.connection.client()
        if self.upload_id is None:
            async with s3_errors(self.location, self.key, "write"):
                await client.put_object(
                    Bucket=self.location.bucket, Key=self.object_key, Body=bytes(self.buffer)
                )
            return
        if self.buffer:
            await self.send_part(bytes(self.buffer))
        async with s3_errors(self.location, self.key, "write"):
            await client.complete_multipart_upload(
                Bucket=self.location.bucket,
                Key=self.object_key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )

    async def abort(self) -> None:
        self.buffer = bytearray()
        if self.upload_id is None:
            return
        try:
            client = await self.connection.client()
            await client.abort_multipart_upload(
                Bucket=self.location.bucket, Key=self.object_key, UploadId=self.upload_id
            )
        except Exception as error:
            log.warning(
                "could not abort the multipart upload of %s (%s): its parts stay invisible "
                "until a lifecycle rule removes them",
                self.object_key,
                error,
            )


@contextlib.asynccontextmanager
async def s3_writing(connection: S3Connection, key: str, part_size: int) -> AsyncIterator[S3Writer]:
    writer = S3Writer(connection, key, part_size)
    try:
        yield writer
        await writer.finish()
    except BaseException:
        # Shielded: a cancelled request (a client hanging up) still aborts its upload.
        aborting = asyncio.ensure_future(writer.abort())
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(aborting)
        raise
