"""A blocking, seekable file over ranged reads of a stored object, for code in a thread.

`zipfile` reads a ZIP's directory from its end: checking that an uploaded .docx really
is a Word package needs a few kilobytes of it, not the file. This file object fetches
what is read, range by range, through the event loop the storage belongs to; it must
be used from another thread (asyncio.to_thread), never from that loop itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, cast

if TYPE_CHECKING:
    from backend.storage.base import FileStorage

BUFFER_BYTES = 64 * 1024
RANGE_TIMEOUT_SECONDS = 60.0


class RangedObject(io.RawIOBase):
    def __init__(
        self, storage: FileStorage, key: str, size: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.storage = storage
        self.key = key
        self.length = size
        self.loop = loop
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = max(0, base + offset)
        return self.position

    async def fetch(self, start: int, end: int) -> bytes:
        return b"".join([chunk async for chunk in self.storage.read_chunks(self.key, start, end)])

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        end = min(self.length, self.position + len(buffer))
        if end <= self.position:
            return 0
        future = asyncio.run_coroutine_threadsafe(self.fetch(self.position, end), self.loop)
        data = future.result(RANGE_TIMEOUT_SECONDS)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


@contextlib.contextmanager
def ranged_file(
    storage: FileStorage, key: str, size: int, loop: asyncio.AbstractEventLoop
) -> Iterator[BinaryIO]:
    raw = RangedObject(storage, key, size, loop)
    handle = io.BufferedReader(raw, buffer_size=BUFFER_BYTES)
    try:
        yield cast(BinaryIO, handle)
    finally:
        handle.close()
