"""Documents of a dataset: listing, reading, RAGFlow's updates, deletion, batch status.

Every lookup goes through the caller's own dataset, so another user's dataset or
document id is a 404 exactly like an unknown one. Run states change only in
`document_runs`; uploads are `document_uploads`' business.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.queryset import QuerySet

from backend.errors import BadRequest, NotFound
from backend.knowledge.datasets import deep_merge, get_dataset, parser_defaults
from backend.knowledge.document_uploads import clean_name
from backend.knowledge.formats import format_of_name
from backend.models import Dataset, Document, User
from backend.models.knowledge import DocumentRun
from backend.search.store import SearchStore
from backend.storage.base import FileStorage
from schemas.documents import (
    DocumentListQuery,
    DocumentOrder,
    DocumentUpdate,
    FileStatus,
    StatusBatch,
    StatusColour,
)

ORDER_FIELDS = {
    DocumentOrder.CREATE_TIME: "created_at",
    DocumentOrder.UPDATE_TIME: "updated_at",
    DocumentOrder.NAME: "name",
}


def documents_of(dataset: Dataset) -> QuerySet[Document]:
    return Document.filter(dataset_id=dataset.id, owner_id=dataset.owner_id)


async def get_document(user: User, dataset_id: str, document_id: str) -> Document:
    dataset = await get_dataset(user, dataset_id)
    document = await documents_of(dataset).get_or_none(id=document_id)
    if document is None:
        raise NotFound(f"Document '{document_id}' not found in dataset '{dataset_id}'")
    return document


async def check_stored(document: Document, files: FileStorage) -> None:
    if not await files.exists(document.location):
        raise NotFound(f"Document '{document.id}' is no longer stored: upload it again")


def from_milliseconds(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


async def list_documents(
    user: User, dataset_id: str, query: DocumentListQuery
) -> tuple[list[Document], int]:
    """RAGFlow's document list. Filtering by an `id` or `name` the dataset does not have
    is a 404, as RAGFlow answers "you don't own the document"."""
    documents = documents_of(await get_dataset(user, dataset_id))
    if query.id is not None:
        documents = documents.filter(id=query.id)
    if query.name is not None:
        documents = documents.filter(name=query.name)
    if query.ids:
        documents = documents.filter(id__in=query.ids)
    if query.keywords:
        documents = documents.filter(name__icontains=query.keywords)
    if query.run:
        documents = documents.filter(run__in=[DocumentRun(run) for run in query.run])
    if query.suffix:
        documents = documents.filter(suffix__in=[suffix.lower() for suffix in query.suffix])
    if query.create_time_from:
        documents = documents.filter(created_at__gte=from_milliseconds(query.create_time_from))
    if query.create_time_to:
        documents = documents.filter(created_at__lte=from_milliseconds(query.create_time_to))
    field = ORDER_FIELDS[query.orderby]
    page = (
        await documents.order_by(f"-{field}" if query.desc else field, "id")
        .offset(query.offset)
        .limit(query.page_size)
    )
    if not page and (query.id is not None or query.name is not None):
        shown = query.id if query.id is not None else query.name
        raise NotFound(f"Document '{shown}' not found in dataset '{dataset_id}'")
    return page, await documents.count()


async def update_document(
    user: User, dataset_id: str, document_id: str, data: DocumentUpdate
) -> Document:
    """Rename, re-configure (taking effect at the next parse), enable or disable, and set
    meta fields. A new name is cleaned by the upload's rule (`clean_name`: last path
    segment, no control or bidi characters, at most 255 bytes) and must keep the file's
    extension: the format is fixed."""
    document = await get_document(user, dataset_id, document_id)
    name = clean_name(data.name) if data.name is not None else None
    if name is not None and name != document.name:
        if format_of_name(name).value != document.suffix:
            raise BadRequest(
                f"The new name must keep the file's type ({document.suffix}): "
                f"name it '<something>.{document.suffix}'"
            )
        document.name = name
    if data.chunk_method is not None and data.chunk_method != document.chunk_method:
        document.chunk_method = data.chunk_method
        if data.parser_config is None:
            document.parser_config = parser_defaults(data.chunk_method)
    if data.parser_config is not None:
        document.parser_config = deep_merge(document.parser_config, data.parser_config.given())
    if data.enabled is not None:
        document.enabled = bool(data.enabled)
    if data.meta_fields is not None:
        document.meta_fields = data.meta_fields
    await document.save()
    return document


async def delete_documents(
    user: User,
    dataset_id: str,
    ids: list[str] | None,
    everything: bool,
    files: FileStorage,
    chunks: SearchStore,
) -> int:
    """Delete documents with their files and chunks; all or nothing over `ids`."""
    documents = documents_of(await get_dataset(user, dataset_id))
    if everything:
        selected = await documents
    else:
        selected = await documents.filter(id__in=ids) if ids else []
        missing = set(ids or []) - {document.id for document in selected}
        if missing:
            raise NotFound(
                f"Documents not found in dataset '{dataset_id}': {', '.join(sorted(missing))}; "
                "nothing was deleted"
            )
    if not selected:
        return 0
    # Rows first: an ingest job still working on one finds its run gone and stops.
    await Document.filter(id__in=[document.id for document in selected]).delete()
    for document in selected:
        await files.delete(document.location)
        await chunks.delete_document(document.id)
    return len(selected)


COLOURS = {
    DocumentRun.UNSTART: StatusColour.GRAY,
    DocumentRun.RUNNING: StatusColour.GRAY,
    DocumentRun.DONE: StatusColour.GREEN,
    DocumentRun.FAIL: StatusColour.RED,
    DocumentRun.CANCEL: StatusColour.RED,
}
MESSAGES = {
    DocumentRun.UNSTART: "Uploaded; not parsed yet: start parsing with POST .../chunks",
    DocumentRun.RUNNING: "Parsing",
    DocumentRun.DONE: "Parsed",
    DocumentRun.CANCEL: "Parsing was cancelled",
}


def last_line(log: str) -> str:
    return log.rsplit("\n", 1)[-1]


def file_status(document: Document) -> FileStatus:
    message = MESSAGES.get(document.run) or last_line(document.progress_msg) or "Parsing failed"
    return FileStatus(
        file_id=document.id,
        file_name=document.name,
        status=COLOURS[document.run],
        bytes=document.size,
        content_length=document.content_length,
        timestamp=f"{document.created_at.astimezone(UTC):%Y%m%d%H%M}",
        msg=message,
        run=document.run,
        progress=document.progress,
        chunk_count=document.chunk_count,
        token_count=document.token_count,
    )


async def status_batch(user: User, dataset_id: str, ids: list[str]) -> StatusBatch:
    """QAnything's get_files_statu: per-colour totals and each named document's status,
    in the order asked. Ids the dataset does not have are a 404, naming them."""
    documents = documents_of(await get_dataset(user, dataset_id))
    found = {document.id: document for document in await documents.filter(id__in=ids)}
    missing = [document_id for document_id in dict.fromkeys(ids) if document_id not in found]
    if missing:
        raise NotFound(f"Documents not found in dataset '{dataset_id}': {', '.join(missing)}")
    details = [file_status(found[document_id]) for document_id in dict.fromkeys(ids)]
    totals: dict[StatusColour, int] = {}
    for detail in details:
        totals[detail.status] = totals.get(detail.status, 0) + 1
    return StatusBatch(total=totals, details=details)
