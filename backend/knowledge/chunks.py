"""A document's chunks (RAGFlow's `/documents/{doc_id}/chunks` routes): list, read, add,
edit and delete by hand.

Every call goes through the caller's own dataset and document, so another user's ids
are 404 like unknown ones; a chunk id names a chunk of that document only. A document
being parsed (RUNNING) refuses edits with 409: its run is about to replace every chunk.
The document's `chunk_count` and `token_count` follow every change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from arq.connections import ArqRedis
from tortoise.expressions import F

from backend.errors import Conflict, NotFound
from backend.knowledge.chunk_embedding import embed_soon
from backend.knowledge.chunk_records import embedding_text, manual_chunk_id, record_of
from backend.knowledge.documents import get_document
from backend.models import Document, User
from backend.models.knowledge import DocumentRun
from backend.providers.tokens import count_tokens
from backend.search import store as search
from backend.search.store import ChunkRecord, SearchStore
from backend.settings import Settings
from schemas.chunks import ChunkCreate, ChunkListQuery, ChunkOut, ChunkUpdate


def chunk_out(record: ChunkRecord) -> ChunkOut:
    created = datetime.fromtimestamp(record.create_time, UTC)
    return ChunkOut(
        id=record.chunk_id,
        content=record.content,
        document_id=record.document_id,
        docnm_kwd=record.document_name,
        dataset_id=record.dataset_id,
        important_keywords=list(record.important_keywords),
        questions=list(record.questions),
        available=record.available,
        positions=[list(box) for box in record.positions],
        token_count=record.token_count,
        embedded=record.vector is not None,
        create_time=f"{created:%Y-%m-%d %H:%M:%S}",
        create_timestamp=record.create_time,
    )


def editable(document: Document) -> Document:
    if document.run is DocumentRun.RUNNING:
        raise Conflict(
            f"Document '{document.name}' is being parsed, which replaces all its chunks: "
            "edit its chunks once parsing is done, or stop it (DELETE .../chunks)"
        )
    return document


async def recount(document: Document, store: SearchStore, token_change: int) -> None:
    await Document.filter(id=document.id).update(
        chunk_count=await store.count_chunks(document.id),
        token_count=F("token_count") + token_change,
    )


async def list_chunks(
    user: User, dataset_id: str, document_id: str, query: ChunkListQuery, store: SearchStore
) -> tuple[Document, list[ChunkRecord], int]:
    document = await get_document(user, dataset_id, document_id)
    page = await store.list_chunks(
        document.id,
        keywords=query.keywords or "",
        chunk_id=query.id,
        offset=query.offset,
        limit=query.page_size,
    )
    if query.id is not None and not page.chunks:
        raise NotFound(f"Chunk '{query.id}' not found in document '{document_id}'")
    return document, page.chunks, page.total


async def get_chunk(
    user: User, dataset_id: str, document_id: str, chunk_id: str, store: SearchStore
) -> ChunkRecord:
    document = await get_document(user, dataset_id, document_id)
    record = await store.get_chunk(chunk_id, document.id)
    if record is None:
        raise NotFound(f"Chunk '{chunk_id}' not found in document '{document_id}'")
    return record


async def add_chunk(
    user: User,
    dataset_id: str,
    document_id: str,
    data: ChunkCreate,
    *,
    store: SearchStore,
    redis: ArqRedis,
    settings: Settings,
) -> ChunkRecord:
    """Index the chunk now (words searchable at once) and have it embedded."""
    document = editable(await get_document(user, dataset_id, document_id))
    chunk_id = manual_chunk_id(document.id, data.content)
    previous = await store.get_chunk(chunk_id, document.id)
    tokens = count_tokens(data.content)
    record = record_of(
        document,
        chunk_id,
        data.content,
        token_count=tokens,
        questions=[q.strip() for q in data.questions],
        important_keywords=data.important_keywords,
        vector=previous.vector if previous else None,
    )
    await store.add_chunks([record])
    await recount(document, store, tokens - (previous.token_count if previous else 0))
    await embed_soon(redis, settings, document.id, [chunk_id])
    return await store.get_chunk(chunk_id, document.id) or record


async def update_chunk(
    user: User,
    dataset_id: str,
    document_id: str,
    chunk_id: str,
    data: ChunkUpdate,
    *,
    store: SearchStore,
    redis: ArqRedis,
    settings: Settings,
) -> ChunkRecord:
    """Change content, keywords, questions or availability; re-embed when the embedded
    text (content or questions) changed."""
    document = editable(await get_document(user, dataset_id, document_id))
    old = await store.get_chunk(chunk_id, document.id)
    if old is None:
        raise NotFound(f"Chunk '{chunk_id}' not found in document '{document_id}'")
    questions = None if data.questions is None else [q.strip() for q in data.questions]
    change = search.ChunkUpdate(
        content=data.content,
        important_keywords=data.important_keywords,
        questions=questions,
        available=data.available,
    )
    updated = await store.update_chunk(document.id, chunk_id, change)
    if updated is None:
        raise NotFound(f"Chunk '{chunk_id}' not found in document '{document_id}'")
    if data.content is not None and data.content != old.content:
        await recount(document, store, count_tokens(data.content) - old.token_count)
    before = embedding_text(old.content, old.questions)
    if embedding_text(updated.content, updated.questions) != before:
        await embed_soon(redis, settings, document.id, [chunk_id])
    return await store.get_chunk(chunk_id, document.id) or updated


async def delete_chunks(
    user: User,
    dataset_id: str,
    document_id: str,
    chunk_ids: Sequence[str] | None,
    delete_all: bool,
    store: SearchStore,
) -> int:
    """RAGFlow's rule: the named chunks (all must exist, else 404 and nothing goes), or
    with no ids every chunk when `delete_all`, else none."""
    document = editable(await get_document(user, dataset_id, document_id))
    if not chunk_ids:
        if not delete_all:
            return 0
        deleted = await store.delete_document(document.id)
        await Document.filter(id=document.id).update(chunk_count=0, token_count=0)
        return deleted
    records = {chunk_id: await store.get_chunk(chunk_id, document.id) for chunk_id in chunk_ids}
    missing = [chunk_id for chunk_id, record in records.items() if record is None]
    if missing:
        raise NotFound(
            f"Chunks not found in document '{document_id}': {', '.join(missing)}; "
            "nothing was deleted"
        )
    deleted = await store.delete_chunks(document.id, list(chunk_ids))
    tokens = sum(record.token_count for record in records.values() if record is not None)
    await recount(document, store, -tokens)
    return deleted
