"""File storage in a local directory (DATA_DIR by default): one machine's form.

Writes stream chunk by chunk into a temporary sibling that is renamed into place when
complete, so a reader never sees half a file and a failed write leaves nothing. A full
disk is a 507 and a directory Sluice cannot write (read-only, no permission) a 503 naming
it, for the request that met it; readiness reports the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

import aiofiles
import aiofiles.os
import aiofiles.threadpool

from backend.metrics.instruments import STORAGE_ERRORS
from backend.storage.base import (
    NAMESPACES,
    READ_CHUNK_BYTES,
    StorageFull,
    StorageUnavailable,
    StoredObject,
    check_key,
    unavailable,
)

PARTIAL_SUFFIX = ".part"


@contextlib.contextmanager
def disk_errors(where: str, operation: str) -> Iterator[None]:
    """OS errors of the storage itself as the client's 507 or 503, counted by
    `operation`; a missing file stays FileNotFoundError for the caller."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as error:
        STORAGE_ERRORS.labels("local", operation).inc()
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(
                f"File storage ({where}) is full: no space left to store the file"
            ) from error
        raise unavailable(where, error.strerror or str(error)) from error


class LocalWriter:
    def __init__(self, handle: Any, where: str) -> None:
        self.handle = handle
        self.where = where
        self.written = 0

    async def write(self, chunk: bytes) -> None:
        with disk_errors(self.where, "write"):
            await self.handle.write(chunk)
        self.written += len(chunk)


class LocalFileStorage:
    """Files under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def description(self) -> str:
        return f"local directory {self.root}"

    def path_of(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key))

    @asynccontextmanager
    async def writing(self, key: str) -> AsyncIterator[LocalWriter]:
        """Chunks are written in a thread; creating, renaming and removing the file are
        done here, not in a thread: a thread finishes its call even after this task is
        cancelled (a client hanging up), behind the back of the cleanup that follows."""
        path = self.path_of(key)
        partial = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")
        with disk_errors(self.description, "write"):
            path.parent.mkdir(parents=True, exist_ok=True)
            raw = partial.open("wb")
        handle = aiofiles.threadpool.wrap(raw)
        try:
            yield LocalWriter(handle, self.description)
            with disk_errors(self.description, "write"):
                await handle.close()
                os.replace(partial, path)
        except BaseException:
            raw.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
            raise

    async def write_bytes(self, key: str, data: bytes) -> None:
        async with self.writing(key) as writer:
            await writer.write(data)

    async def read_chunks(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        async with aiofiles.open(self.path_of(key), "rb") as handle:
            await handle.seek(start)
            left = None if end is None else max(0, end - start)
            while left is None or left > 0:
                size = READ_CHUNK_BYTES if left is None else min(READ_CHUNK_BYTES, left)
                chunk = await handle.read(size)
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def read_bytes(self, key: str) -> bytes:
        return await asyncio.to_thread(self.path_of(key).read_bytes)

    @asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        """The stored file itself."""
        yield self.path_of(key)

    @asynccontextmanager
    async def seekable(self, key: str) -> AsyncIterator[BinaryIO]:
        handle = await asyncio.to_thread(self.path_of(key).open, "rb")
        try:
            yield handle
        finally:
            handle.close()

    async def size(self, key: str) -> int | None:
        try:
            return (await aiofiles.os.stat(self.path_of(key))).st_size
        except FileNotFoundError:
            return None

    async def exists(self, key: str) -> bool:
        return await aiofiles.os.path.isfile(self.path_of(key))

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError), disk_errors(self.description, "delete"):
            await aiofiles.os.remove(self.path_of(key))

    async def delete_prefix(self, prefix: str) -> None:
        directory = self.path_of(prefix)
        if len(check_key(prefix)) < 2:
            raise ValueError(f"Not a storage prefix: {prefix!r}")
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)

    async def listing(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        top = self.path_of(prefix) if prefix else self.root
        for found in await asyncio.to_thread(self.walk, top):
            yield found

    def walk(self, top: Path) -> list[StoredObject]:
        """Stored files only: partial writes and anything else in the directory (the
        SQLite files beside them in DATA_DIR) are not keys."""
        found = []
        for folder, _, names in os.walk(top):
            for name in sorted(names):
                key = Path(folder, name).relative_to(self.root).as_posix()
                try:
                    check_key(key)
                except ValueError:
                    continue
                if key.split("/")[0] in NAMESPACES:
                    found.append(StoredObject(key, Path(folder, name).stat().st_size))
        return sorted(found, key=lambda item: item.key)

    async def check(self) -> None:
        """The directory exists (or can be made) and takes writes."""
        try:
            await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        except OSError as error:
            STORAGE_ERRORS.labels("local", "check").inc()
            raise unavailable(self.description, error.strerror or str(error)) from error
        if not os.access(self.root, os.W_OK | os.X_OK):
            STORAGE_ERRORS.labels("local", "check").inc()
            raise StorageUnavailable(
                f"File storage ({self.description}) is unavailable: not writable"
            )

    async def close(self) -> None:
        return None
