"""The file storage contract, run on both forms: a local directory and a real S3 server
(SeaweedFS, started by scripts/test.sh).

Write, read and delete; ranged and chunked reads; a write that fails or is cancelled
part-way leaves nothing (on S3 also no multipart upload left open); a reader never sees
half a file; listings and prefix deletes.
"""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.settings import Settings
from backend.storage.base import READ_CHUNK_BYTES, FileStorage, StoredObject
from backend.storage.configured import make_storage
from backend.storage.scoped import ScopedStorage
from tests.support.s3_server import s3_server_or_skip, wait_for_bucket

pytestmark = pytest.mark.sqlite_only

MIB = 1024 * 1024
# S3's smallest part; files above it go up as multipart uploads.
PART = 5 * MIB


class Boom(Exception):
    pass


@pytest.fixture(params=["local", "s3"])
async def storage(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> AsyncIterator[FileStorage]:
    if request.param == "local":
        made = make_storage(settings, f"file://{tmp_path / 'files'}")
    else:
        server = s3_server_or_skip()
        await wait_for_bucket(server, settings)
        made = make_storage(server.settings(settings, s3_part_size_mb=5))
    yield made
    await made.close()


def payload(size: int) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


async def write(storage: FileStorage, key: str, data: bytes, step: int = 64 * 1024) -> None:
    async with storage.writing(key) as writer:
        for start in range(0, len(data), step):
            await writer.write(data[start : start + step])


async def read(storage: FileStorage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.read_chunks(key, start, end)])


async def test_write_read_delete(storage: FileStorage) -> None:
    key = "documents/d1/f1.txt"
    assert await storage.size(key) is None
    await write(storage, key, b"hello, storage")
    assert await storage.exists(key)
    assert await storage.size(key) == len(b"hello, storage")
    assert await storage.read_bytes(key) == b"hello, storage"
    await storage.delete(key)
    assert not await storage.exists(key)
    await storage.delete(key)  # deleting what is gone is no error
    with pytest.raises(FileNotFoundError):
        await storage.read_bytes(key)
    async with storage.local_copy(key) as path:  # parsers find no file, on both forms
        assert not path.exists()


async def test_ranged_and_chunked_reads(storage: FileStorage) -> None:
    data = payload(3 * READ_CHUNK_BYTES + 123)
    await storage.write_bytes("uploads/big.bin", data)
    assert await read(storage, "uploads/big.bin", 10, 20) == data[10:20]
    assert await read(storage, "uploads/big.bin", len(data) - 5) == data[-5:]
    assert await read(storage, "uploads/big.bin", 7, 7) == b""
    assert await read(storage, "uploads/big.bin", len(data)) == b""
    chunks = [chunk async for chunk in storage.read_chunks("uploads/big.bin")]
    assert len(chunks) >= 4 and max(map(len, chunks)) <= READ_CHUNK_BYTES
    assert b"".join(chunks) == data
    async with storage.seekable("uploads/big.bin") as handle:
        handle.seek(-100, os.SEEK_END)
        assert await asyncio.to_thread(handle.read, 50) == data[-100:-50]
    async with storage.local_copy("uploads/big.bin") as path:
        assert path.read_bytes() == data


async def test_a_large_file_streams_in_parts(storage: FileStorage) -> None:
    data = payload(2 * PART + 12345)
    key = "documents/d2/large.pdf"
    assert not await storage.exists(key)  # the client is made (and its models loaded) first
    tracemalloc.start()
    async with storage.writing(key) as writer:
        for start in range(0, len(data), MIB):
            await writer.write(data[start : start + MIB])
        if hasattr(writer, "upload_id"):  # S3: parts went up while the file arrived
            assert writer.upload_id is not None and len(writer.parts) == 2
        assert not await storage.exists(key), "visible before the write completed"
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Never the file, nor even a part, in memory (a MiB of it and the chunks in flight).
    assert peak < PART, f"{peak / MIB:.1f} MiB held while writing"
    assert await storage.size(key) == len(data)
    assert await read(storage, key, PART - 3, PART + 3) == data[PART - 3 : PART + 3]


async def open_multipart_uploads(storage: FileStorage) -> list[str]:
    connection = getattr(storage, "connection", None)
    if connection is None:
        return []
    client = await connection.client()
    listed = await client.list_multipart_uploads(
        Bucket=connection.location.bucket, Prefix=connection.location.prefix
    )
    return [upload["Key"] for upload in listed.get("Uploads", [])]


async def leftovers(storage: FileStorage) -> list[StoredObject]:
    return [stored async for stored in storage.listing()]


async def test_a_write_that_fails_midway_leaves_nothing(storage: FileStorage) -> None:
    key = "documents/d3/broken.docx"
    with pytest.raises(Boom):
        async with storage.writing(key) as writer:
            await writer.write(payload(PART + MIB))  # one part sent on S3
            raise Boom
    assert not await storage.exists(key)
    assert await leftovers(storage) == []
    assert await open_multipart_uploads(storage) == []


async def test_a_cancelled_write_leaves_nothing(storage: FileStorage) -> None:
    key = "documents/d4/cancelled.pdf"
    started = asyncio.Event()

    async def slow_upload() -> None:
        async with storage.writing(key) as writer:
            await writer.write(payload(PART + MIB))
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(slow_upload())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await leftovers(storage) == []
    assert await open_multipart_uploads(storage) == []


async def test_an_overwrite_is_all_or_nothing(storage: FileStorage) -> None:
    key = "avatars/7.jpg"
    await storage.write_bytes(key, b"first")
    with pytest.raises(Boom):
        async with storage.writing(key) as writer:
            await writer.write(b"second, never kept")
            raise Boom
    assert await storage.read_bytes(key) == b"first"


async def test_listing_and_prefix_delete(storage: FileStorage) -> None:
    for key in ("documents/ds1/a.txt", "documents/ds1/b.md", "documents/ds2/c.txt"):
        await storage.write_bytes(key, key.encode())
    await storage.write_bytes("uploads/u1.png", b"png")
    listed = [stored async for stored in storage.listing()]
    assert [item.key for item in listed] == [
        "documents/ds1/a.txt",
        "documents/ds1/b.md",
        "documents/ds2/c.txt",
        "uploads/u1.png",
    ]
    assert listed[0].size == len(b"documents/ds1/a.txt")
    documents = ScopedStorage(storage, "documents")
    assert [item.key async for item in documents.listing("ds1")] == ["ds1/a.txt", "ds1/b.md"]
    await documents.delete_prefix("ds1")
    assert [item.key async for item in storage.listing()] == [
        "documents/ds2/c.txt",
        "uploads/u1.png",
    ]


@pytest.mark.parametrize("key", ["../x", "documents/../../etc/passwd", "a/.hidden", "A/B", ""])
async def test_keys_that_are_not_sluices_are_refused(storage: FileStorage, key: str) -> None:
    with pytest.raises(ValueError, match="Not a storage key"):
        await storage.write_bytes(key, b"x")
