"""Streaming a file into S3: one PUT when it fits in a part, a multipart upload above.

A write gathers one part at a time (S3_PART_SIZE_MB): its first MiB in memory, the rest
in a temporary file under TMPDIR (never DATA_DIR), so a process holds at most about a
MiB of any upload in memory, whatever the file's size. The object appears only
when the write completes (PUT, or CompleteMultipartUpload); a write that fails or is
cancelled aborts its multipart upload, so nothing half-written is ever visible. Should
even the abort fail (S3 gone), the parts stay invisible to every reader and listing;
a bucket lifecycle rule (AbortIncompleteMultipartUpload) reclaims them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Any

from backend.storage.s3_client import S3Connection, s3_errors

log = logging.getLogger("sluice.storage")
SPOOL_MEMORY_BYTES = 1024 * 1024


class PartBuffer:
    """The part being gathered: in memory up to SPOOL_MEMORY_BYTES, then in a file."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by owner)
            max_size=SPOOL_MEMORY_BYTES, prefix="sluice-part-"
        )
        self.size = 0

    def add(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)

    def body(self) -> IO[bytes]:
        """The part from its start, for botocore to hash and send (and rewind on a retry)."""
        self.file.seek(0)
        return self.file

    def close(self) -> None:
        self.file.close()


class S3Writer:
    def __init__(self, connection: S3Connection, key: str, part_size: int) -> None:
        self.connection = connection
        self.location = connection.location
        self.key = key
        self.object_key = self.location.object_key(key)
        self.part_size = part_size
        self.buffer = PartBuffer()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.written = 0

    async def write(self, chunk: bytes) -> None:
        self.written += len(chunk)
        view = memoryview(chunk)
        while view:
            room = self.part_size - self.buffer.size
            self.buffer.add(view[:room])
            view = view[room:]
            if self.buffer.size == self.part_size:
                await self.send_part()

    async def send_part(self) -> None:
        """Send the gathered part and start the next one."""
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
                Body=self.buffer.body(),
                ContentLength=self.buffer.size,
            )
        self.parts.append({"ETag": sent["ETag"], "PartNumber": number})
        self.buffer.close()
        self.buffer = PartBuffer()

    async def finish(self) -> None:
        client = await self.connection.client()
        if self.upload_id is None:
            async with s3_errors(self.location, self.key, "write"):
                await client.put_object(
                    Bucket=self.location.bucket,
                    Key=self.object_key,
                    Body=self.buffer.body(),
                    ContentLength=self.buffer.size,
                )
            self.buffer.close()
            return
        if self.buffer.size:
            await self.send_part()
        async with s3_errors(self.location, self.key, "write"):
            await client.complete_multipart_upload(
                Bucket=self.location.bucket,
                Key=self.object_key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        self.buffer.close()

    async def abort(self) -> None:
        self.buffer.close()
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
