"""Uploading documents into a dataset: files streamed to storage, checked, recorded.

An upload is all or nothing: a file over a size limit (413), of a type Sluice cannot
parse or whose content is not what its name says (415), a bad name (400) or a broken
body ends the request and removes every file it stored. Only then are the rows
written, in one transaction that first touches the dataset's row, so concurrent uploads
into one dataset take turns and the `soft` duplicate check (QAnything's `mode`: skip a
file whose name the dataset already has, and say so) cannot be raced. Documents start
UNSTART with the dataset's chunk method and parser settings; parsing is started
separately (POST .../chunks), as in RAGFlow.
"""

from __future__ import annotations

import asyncio
import copy
import unicodedata
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from backend.errors import BadRequest, NotFound, PayloadTooLarge
from backend.knowledge import formats
from backend.knowledge.document_runs import now
from backend.knowledge.file_parts import FilePart
from backend.models import Dataset, Document
from backend.models.ids import new_id
from backend.settings import Settings
from backend.storage.base import FileStorage, StorageWriter
from backend.storage.configured import document_key
from schemas.documents import FILE_NAME_MAX_BYTES, DuplicateMode, SkippedFile

FILE_FIELDS = ("file", "files")
MEBIBYTE = 1024 * 1024
BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def limit_text(limit: int) -> str:
    if limit % MEBIBYTE == 0:
        return f"{limit // MEBIBYTE} MiB ({limit} bytes)"
    return f"{limit} bytes"


def clean_name(raw: str) -> str:
    """The file's display name: its last path segment (whichever separator the client
    used), NFC-normalised, without control characters or surrounding blanks. It is a
    label only; the stored file's path never comes from it."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(char for char in name if not hidden_control(char)).strip()
    if not name.strip("."):
        raise BadRequest(f"File name '{raw[:60]}' has no usable name: name the file, e.g. a.pdf")
    if len(name.encode("utf-8")) > FILE_NAME_MAX_BYTES:
        raise BadRequest(f"File name must be {FILE_NAME_MAX_BYTES} bytes or less: '{name[:60]}…'")
    return name


def hidden_control(char: str) -> bool:
    """Control characters, and the bidirectional overrides that make `exe.pdf` show as
    `fdp.exe`: never part of a name a person typed."""
    return unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS


class UploadAborted(Exception):
    """Ends a file's write without keeping it (the request failed)."""


@dataclass
class StoredFile:
    document_id: str
    name: str
    fmt: formats.DocumentFormat
    key: str
    size: int = 0


class DocumentUpload:
    """The sink the multipart reader streams file parts into (see multipart_files)."""

    def __init__(self, dataset: Dataset, storage: FileStorage, settings: Settings) -> None:
        self.dataset = dataset
        self.storage = storage
        self.file_limit = settings.document_max_bytes
        self.request_limit = settings.document_upload_max_bytes
        self.max_pixels = settings.image_max_pixels
        self.stored: list[StoredFile] = []
        self.total = 0
        self.current: StoredFile | None = None
        self.writer: StorageWriter | None = None
        self.head = bytearray()
        self.writing: AbstractAsyncContextManager[StorageWriter] | None = None

    async def start(self, part: FilePart) -> None:
        if part.field not in FILE_FIELDS:
            raise BadRequest(
                f"Unexpected file field '{part.field[:40]}': send each file in a 'file' part"
            )
        if not part.filename.strip():
            raise BadRequest("No file selected: a 'file' part has an empty file name")
        name = clean_name(part.filename)
        fmt = formats.format_of_name(name)
        document_id = new_id()
        self.current = StoredFile(
            document_id, name, fmt, document_key(self.dataset.id, document_id, fmt.value)
        )
        self.head.clear()
        self.writing = self.storage.writing(self.current.key)
        self.writer = await self.writing.__aenter__()

    async def write(self, data: bytes) -> None:
        assert self.current is not None and self.writer is not None
        self.current.size += len(data)
        self.total += len(data)
        if self.current.size > self.file_limit:
            raise PayloadTooLarge(
                f"File '{self.current.name}' is too large: the limit is "
                f"{limit_text(self.file_limit)} per document"
            )
        if self.total > self.request_limit:
            raise PayloadTooLarge(
                f"Upload too large: the limit is {limit_text(self.request_limit)} of files per "
                "request; send the files in several requests"
            )
        if len(self.head) < formats.SNIFF_BYTES:
            self.head.extend(data[: formats.SNIFF_BYTES - len(self.head)])
        await self.writer.write(data)

    async def finish(self) -> None:
        assert self.current is not None
        stored, self.current = self.current, None
        # Listed before it is moved into place, so a cleanup never misses it.
        self.stored.append(stored)
        await self.close_writing(None)
        # A seekable file, not a copy: on S3 only the ZIP directory is fetched.
        async with self.storage.seekable(stored.key) as package:
            await asyncio.to_thread(
                formats.check_content,
                stored.name,
                stored.fmt,
                bytes(self.head),
                package,
                self.max_pixels,
            )

    async def close_writing(self, error: BaseException | None) -> None:
        """End the current file's write: kept when `error` is None, removed otherwise."""
        writing, self.writing, self.writer = self.writing, None, None
        if writing is not None:
            await writing.__aexit__(type(error) if error else None, error, None)

    async def discard(self) -> None:
        """Remove everything this request stored (the request failed)."""
        self.current = None
        await self.close_writing(UploadAborted())
        for stored in self.stored:
            await self.storage.delete(stored.key)

    async def commit(self, mode: DuplicateMode) -> tuple[list[Document], list[SkippedFile]]:
        """Record the stored files as documents; in `soft` mode skip (and delete) those
        whose name the dataset, or an earlier file of this request, already has."""
        if not self.stored:
            raise BadRequest("No file part: send the files as 'file' parts of the form")
        created: list[Document] = []
        skipped: list[SkippedFile] = []
        try:
            async with in_transaction():
                # Taking the dataset's row first makes concurrent uploads take turns.
                if not await Dataset.filter(id=self.dataset.id).update(updated_at=now()):
                    raise NotFound(f"Dataset '{self.dataset.id}' was deleted during the upload")
                names = set(
                    await Document.filter(
                        dataset_id=self.dataset.id, name__in=[s.name for s in self.stored]
                    ).values_list("name", flat=True)
                )
                for stored in self.stored:
                    if mode is DuplicateMode.SOFT and stored.name in names:
                        reason = duplicate_reason(stored)
                        skipped.append(SkippedFile(name=stored.name, reason=reason))
                        continue
                    names.add(stored.name)
                    created.append(await self.record(stored))
        except BaseException:
            await self.discard()
            raise
        for stored in self.stored:
            if stored.document_id not in {document.id for document in created}:
                await self.storage.delete(stored.key)
        return created, skipped

    async def record(self, stored: StoredFile) -> Document:
        return await Document.create(
            id=stored.document_id,
            dataset_id=self.dataset.id,
            owner_id=self.dataset.owner_id,
            name=stored.name,
            location=stored.key,
            size=stored.size,
            type=formats.ragflow_type(stored.fmt),
            suffix=stored.fmt.value,
            content_type=formats.CONTENT_TYPES[stored.fmt],
            chunk_method=self.dataset.chunk_method,
            parser_config=copy.deepcopy(self.dataset.parser_config),
        )


def duplicate_reason(stored: StoredFile) -> str:
    return (
        f"The dataset already has a document named '{stored.name}': skipped "
        "(mode=soft); send mode=strong to upload it anyway"
    )
