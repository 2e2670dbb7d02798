"""Chunks uploaded already split (QAnything's `chunk_embedding`): one text document
whose chunks are exactly the texts given, not the parser's.

The texts are stored joined as the document's file (so it can be downloaded, and a
later re-parse has something to parse), and indexed as the document's chunks at once:
their words are searchable immediately and the ingest worker embeds them (as for chunks
added by hand, backend/knowledge/chunk_embedding.py). The document is DONE, since no
parsing is pending; re-parsing it would replace these chunks with the parser's.
"""

from __future__ import annotations

from arq.connections import ArqRedis

from backend.knowledge.chunk_embedding import embed_soon
from backend.knowledge.chunk_records import manual_chunk_id, record_of
from backend.knowledge.datasets import get_dataset
from backend.knowledge.formats import CONTENT_TYPES, DocumentFormat, ragflow_type
from backend.models import Document, User
from backend.models.ids import new_id
from backend.models.knowledge import DocumentRun
from backend.providers.tokens import count_tokens
from backend.search.store import SearchStore
from backend.settings import Settings
from backend.storage.base import FileStorage
from backend.storage.configured import document_key

SEPARATOR = "\n\n"


async def upload_chunks(
    user: User,
    dataset_id: str,
    name: str | None,
    texts: list[str],
    *,
    files: FileStorage,
    store: SearchStore,
    redis: ArqRedis,
    settings: Settings,
) -> Document:
    """A new document of the dataset holding `texts` as its chunks (a repeated text once)."""
    dataset = await get_dataset(user, dataset_id)
    kept = list(dict.fromkeys(text.strip() for text in texts if text.strip()))
    content = SEPARATOR.join(kept)
    data = content.encode()
    document_id = new_id()
    key = document_key(dataset.id, document_id, DocumentFormat.TXT.value)
    async with files.writing(key) as writer:
        await writer.write(data)
    try:
        document = await Document.create(
            id=document_id,
            dataset_id=dataset.id,
            owner_id=dataset.owner_id,
            name=name or f"{document_id}.txt",
            location=key,
            size=len(data),
            type=ragflow_type(DocumentFormat.TXT),
            suffix=DocumentFormat.TXT.value,
            content_type=CONTENT_TYPES[DocumentFormat.TXT],
            chunk_method=dataset.chunk_method,
            parser_config=dict(dataset.parser_config),
            content_length=len(content),
        )
    except BaseException:
        await files.delete(key)
        raise
    records = [
        record_of(
            document, manual_chunk_id(document.id, text), text, token_count=count_tokens(text)
        )
        for text in kept
    ]
    await store.add_chunks(records)
    await Document.filter(id=document.id).update(
        run=DocumentRun.DONE,
        progress=1.0,
        chunk_count=len(records),
        token_count=sum(record.token_count for record in records),
    )
    await embed_soon(redis, settings, document.id, [record.chunk_id for record in records])
    return await Document.get(id=document.id)
