"""One kind of file's folder of the storage: `documents/`, `uploads/` or `avatars/`.

Callers name files inside their folder (a document's `location` is `<dataset id>/<document
id>.<format>`, as it always was under DATA_DIR/documents), so the keys recorded in SQL
stay the same whether the storage is a directory or a bucket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import BinaryIO

from backend.storage.base import NAMESPACES, FileStorage, StorageWriter, StoredObject


class ScopedStorage:
    def __init__(self, storage: FileStorage, namespace: str) -> None:
        if namespace not in NAMESPACES:
            raise ValueError(f"Not a storage folder: {namespace!r}")
        self.storage = storage
        self.namespace = namespace

    @property
    def description(self) -> str:
        return self.storage.description

    def full(self, key: str) -> str:
        return f"{self.namespace}/{key}"

    def writing(self, key: str) -> AbstractAsyncContextManager[StorageWriter]:
        return self.storage.writing(self.full(key))

    async def write_bytes(self, key: str, data: bytes) -> None:
        await self.storage.write_bytes(self.full(key), data)

    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self.storage.read_chunks(self.full(key), start, end)

    async def read_bytes(self, key: str) -> bytes:
        return await self.storage.read_bytes(self.full(key))

    def local_copy(self, key: str) -> AbstractAsyncContextManager[Path]:
        return self.storage.local_copy(self.full(key))

    def seekable(self, key: str) -> AbstractAsyncContextManager[BinaryIO]:
        return self.storage.seekable(self.full(key))

    async def size(self, key: str) -> int | None:
        return await self.storage.size(self.full(key))

    async def exists(self, key: str) -> bool:
        return await self.storage.exists(self.full(key))

    async def delete(self, key: str) -> None:
        await self.storage.delete(self.full(key))

    async def delete_prefix(self, prefix: str) -> None:
        await self.storage.delete_prefix(self.full(prefix))

    async def listing(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        start = len(self.namespace) + 1
        async for stored in self.storage.listing(self.full(prefix) if prefix else self.namespace):
            yield StoredObject(stored.key[start:], stored.size)

    async def check(self) -> None:
        await self.storage.check()

    async def close(self) -> None:
        """The shared storage is closed by its owner (close_storage)."""
