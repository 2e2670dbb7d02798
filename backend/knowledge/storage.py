"""Where document files live: a small storage interface and its local-directory form.

Keys are made by Sluice (`<dataset id>/<document id>.<format>`), never from a client's
file name, so no name can reach outside the storage root. Writes stream chunk by chunk
into a temporary sibling that is renamed into place when complete: a reader never sees
half a file, and an upload that fails leaves nothing behind. An S3-compatible storage
can implement the same interface later.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import aiofiles
import aiofiles.os
import aiofiles.threadpool

from backend.settings import Settings

READ_CHUNK_BYTES = 256 * 1024
KEY_SEGMENT = re.compile(r"[0-9a-f]{32}(\.[a-z0-9]{1,16})?")
PARTIAL_SUFFIX = ".part"


class StorageWriter(Protocol):
    """An open write: `write` chunks, then leave the `writing` block to keep the file,
    or raise out of it to discard it."""

    written: int

    async def write(self, chunk: bytes) -> None: ...


class FileStorage(Protocol):
    def writing(self, key: str) -> contextlib.AbstractAsyncContextManager[StorageWriter]: ...

    def read_chunks(self, key: str) -> AsyncIterator[bytes]: ...

    def local_copy(self, key: str) -> contextlib.AbstractAsyncContextManager[Path]: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> None: ...


def document_key(dataset_id: str, document_id: str, suffix: str) -> str:
    return f"{dataset_id}/{document_id}.{suffix}"


def check_key(key: str) -> list[str]:
    """Keys are Sluice's own; anything else is a bug, refused before touching a path."""
    segments = key.split("/")
    if not 1 <= len(segments) <= 2 or not all(KEY_SEGMENT.fullmatch(s) for s in segments):
        raise ValueError(f"Not a storage key: {key!r}")
    return segments


class LocalWriter:
    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.written = 0

    async def write(self, chunk: bytes) -> None:
        await self.handle.write(chunk)
        self.written += len(chunk)


class LocalFileStorage:
    """Files under one directory (DATA_DIR/documents by default)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_of(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key))

    @asynccontextmanager
    async def writing(self, key: str) -> AsyncIterator[LocalWriter]:
        """Chunks are written in a thread; creating, renaming and removing the file are
        done here, not in a thread: a thread finishes its call even after this task is
        cancelled (a client hanging up), behind the back of the cleanup that follows."""
        path = self.path_of(key)
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = partial.open("wb")
        handle = aiofiles.threadpool.wrap(raw)
        try:
            yield LocalWriter(handle)
            await handle.close()
            os.replace(partial, path)
        except BaseException:
            raw.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
            raise

    async def read_chunks(self, key: str) -> AsyncIterator[bytes]:
        async with aiofiles.open(self.path_of(key), "rb") as handle:
            while chunk := await handle.read(READ_CHUNK_BYTES):
                yield chunk

    @asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        """A path parsers can open; for local storage, the stored file itself."""
        yield self.path_of(key)

    async def exists(self, key: str) -> bool:
        return await aiofiles.os.path.exists(self.path_of(key))

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(self.path_of(key))

    async def delete_prefix(self, prefix: str) -> None:
        """Everything stored under a dataset's id."""
        directory = self.path_of(prefix)
        if directory.parent != self.root:
            raise ValueError(f"Not a storage prefix: {prefix!r}")
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)


def document_storage(settings: Settings) -> LocalFileStorage:
    return LocalFileStorage(settings.documents_dir)
