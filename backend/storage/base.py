"""The file storage interface every file Sluice keeps goes through, and its errors.

Keys are made by Sluice, never from a client's file name: `documents/<dataset id>/<document
id>.<format>`, `uploads/<upload id>.<ext>`, `avatars/<user id>.jpg`. Each segment is
lowercase letters and digits with at most one extension, so no key can climb out of the
storage root or name a hidden file. A write is all or nothing: a reader never sees half a
file, and a write that fails (or whose caller raises) leaves nothing behind.

Failures of the storage itself are `ApiError`s, so a request that meets one answers with
a clear status instead of a 500: `StorageUnavailable` (503: unreachable, refused
credentials, a missing bucket, a read-only disk) and `StorageFull` (507). A key that is
not stored raises `FileNotFoundError`, which callers turn into their own 404 or FAIL.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from backend.errors import ApiError, ServiceUnavailable

# How much one read hands over at a time: a download or a parse never holds more.
READ_CHUNK_BYTES = 256 * 1024
KEY_SEGMENT = re.compile(r"[0-9a-z][0-9a-z_-]{0,63}(\.[a-z0-9]{1,16})?")
# The folders of the storage root, one per kind of file.
NAMESPACES = frozenset({"documents", "uploads", "avatars"})
MAX_KEY_SEGMENTS = 4


class StorageUnavailable(ServiceUnavailable):
    """The file storage cannot be reached or refuses Sluice (503, naming the storage)."""


class StorageFull(ApiError):
    """No space left where files are stored (507 Insufficient Storage)."""

    status = 507


def unavailable(where: str, reason: str) -> StorageUnavailable:
    return StorageUnavailable(f"File storage ({where}) is unavailable: {reason}; try again later")


def check_key(key: str) -> list[str]:
    """A key's segments; anything but Sluice's own key shape is a bug, refused before it
    reaches a path or a request."""
    segments = key.split("/")
    if not 1 <= len(segments) <= MAX_KEY_SEGMENTS or not all(
        KEY_SEGMENT.fullmatch(segment) for segment in segments
    ):
        raise ValueError(f"Not a storage key: {key!r}")
    return segments


@dataclass(frozen=True)
class StoredObject:
    """A stored file as listings give it."""

    key: str
    size: int


class StorageWriter(Protocol):
    """An open write: `write` chunks, then leave the `writing` block to keep the file,
    or raise out of it to discard it."""

    written: int

    async def write(self, chunk: bytes) -> None: ...


class FileStorage(Protocol):
    """Where files live: a local directory or an S3-compatible bucket."""

    @property
    def description(self) -> str:
        """Where, for messages and logs (never credentials)."""
        ...

    def writing(self, key: str) -> AbstractAsyncContextManager[StorageWriter]: ...

    async def write_bytes(self, key: str, data: bytes) -> None:
        """A small file (an avatar, a chat image) in one write, all or nothing."""
        ...

    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes `start` to `end` (exclusive; None: to the end), chunk by chunk."""
        ...

    async def read_bytes(self, key: str) -> bytes:
        """A small file whole."""
        ...

    def local_copy(self, key: str) -> AbstractAsyncContextManager[Path]:
        """A path parsers can open: the file itself when local, else a temporary copy
        (outside DATA_DIR) removed when the block ends."""
        ...

    def seekable(self, key: str) -> AbstractAsyncContextManager[BinaryIO]:
        """A blocking, seekable file object for code run in a thread (a ZIP directory
        read): ranged reads, never the whole file."""
        ...

    async def size(self, key: str) -> int | None:
        """The stored file's size; None when there is none."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> None:
        """Everything stored under the folder `prefix` (a dataset's files)."""
        ...

    def listing(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        """Every stored file under the folder `prefix` (all of them for "")."""
        ...

    async def check(self) -> None:
        """Raise StorageUnavailable, saying why, unless files can be stored right now."""
        ...

    async def close(self) -> None: ...
