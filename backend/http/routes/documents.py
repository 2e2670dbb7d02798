"""Documents at RAGFlow's `/api/v1/datasets/{id}/documents`: upload, list, download,
update, delete; and a batch status call shaped as QAnything's `get_files_statu`."""

from __future__ import annotations

import asyncio
import unicodedata
from urllib.parse import quote

from pydantic import ValidationError
from quart import Blueprint, Response, current_app, request
from quart_schema import (
    DataSource,
    document_request,
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)

from backend.errors import Unprocessable
from backend.http.auth import authenticated, current_user
from backend.http.body_limits import MULTIPART_OVERHEAD, body_limit
from backend.http.byte_ranges import RangeNotSatisfiable, range_not_satisfiable, requested_range
from backend.http.documented_errors import document_errors
from backend.http.multipart_files import read_multipart
from backend.http.openapi import RawBody
from backend.http.responses import ok
from backend.http.routes.datasets import http_date, milliseconds
from backend.knowledge import datasets, documents
from backend.knowledge.document_uploads import DocumentUpload, hidden_control
from backend.knowledge.formats import CONTENT_TYPES
from backend.models import Document
from backend.search.stores import search_store
from backend.settings import Settings
from backend.storage.configured import document_storage
from schemas.documents import (
    DocumentListQuery,
    DocumentOut,
    DocumentPage,
    DocumentUpdate,
    DuplicateMode,
    StatusBatch,
    StatusRequest,
    UploadForm,
    UploadQuery,
    UploadResult,
)
from schemas.envelope import Envelope
from schemas.knowledge import DeleteSelection

blueprint = Blueprint(
    "documents", __name__, url_prefix="/api/v1/datasets/<id:dataset_id>/documents"
)

SERVED_TYPES = list(dict.fromkeys(CONTENT_TYPES.values()))


class DocumentFile(RawBody):
    """The document's original bytes, as an attachment, with its format's media type."""

    media_type = SERVED_TYPES[0]
    other_media_types = tuple(SERVED_TYPES[1:])
    headers = {"Content-Disposition": "attachment, with the document's name"}


def document_upload_body(settings: Settings) -> int:
    return settings.document_upload_max_bytes + MULTIPART_OVERHEAD


def document_out(document: Document) -> DocumentOut:
    begun = document.process_begin_at
    return DocumentOut(
        id=document.id,
        name=document.name,
        dataset_id=document.dataset_id,
        knowledgebase_id=document.dataset_id,
        location=document.location,
        size=document.size,
        type=document.type,
        suffix=document.suffix,
        content_type=document.content_type,
        chunk_method=document.chunk_method,
        parser_config=document.parser_config,
        run=document.run,
        progress=document.progress,
        progress_msg=document.progress_msg,
        chunk_count=document.chunk_count,
        token_count=document.token_count,
        process_begin_at=http_date(begun) if begun is not None else None,
        process_duration=document.process_duration,
        status="1" if document.enabled else "0",
        enabled=document.enabled,
        meta_fields=document.meta_fields,
        created_by=str(document.owner_id),
        create_time=milliseconds(document.created_at),
        create_date=http_date(document.created_at),
        update_time=milliseconds(document.updated_at),
        update_date=http_date(document.updated_at),
    )


def duplicate_mode(fields: dict[str, str], query: UploadQuery) -> DuplicateMode:
    """QAnything sends `mode` as a form field; it wins over the query parameter."""
    if "mode" not in fields:
        return query.mode
    try:
        return UploadQuery(mode=fields["mode"]).mode  # type: ignore[arg-type]
    except ValidationError as error:
        raise Unprocessable("Invalid form field 'mode': send 'soft' or 'strong'") from error


@blueprint.post("")
@document_errors(415)
@body_limit(document_upload_body)
@authenticated
@validate_querystring(UploadQuery)
@document_request(UploadForm, source=DataSource.FORM_MULTIPART)
@validate_response(UploadResult, 201)
async def upload_documents(dataset_id: str, query_args: UploadQuery):
    """Upload files as `file` parts (several per request), streamed to storage. Each file
    is size-limited (413), and its content must be the format its extension names
    (415): txt, md, html, pdf, docx, pptx, xlsx, csv, json. With `mode=soft` (the
    default) a file whose name the dataset already has is skipped and listed in
    `skipped`; `mode=strong` uploads it anyway. New documents are UNSTART: start parsing
    with POST /api/v1/datasets/{id}/chunks."""
    settings = current_app.config["SETTINGS"]
    dataset = await datasets.get_dataset(current_user(), dataset_id)
    upload = DocumentUpload(dataset, document_storage(settings), settings)
    try:
        fields = await read_multipart(request.body, request.headers.get("Content-Type"), upload)
        mode = duplicate_mode(fields, query_args)
    except BaseException:
        # Shielded: a client that hung up cancels this request, maybe more than once,
        # and the files it sent must go all the same.
        await asyncio.shield(upload.discard())
        raise
    # Shielded too: once the body is in, the upload completes even if the client leaves.
    created, skipped = await asyncio.shield(upload.commit(mode))
    return UploadResult(data=[document_out(item) for item in created], skipped=skipped), 201


@blueprint.get("")
@authenticated
@validate_querystring(DocumentListQuery)
@validate_response(Envelope[DocumentPage])
async def list_documents(dataset_id: str, query_args: DocumentListQuery):
    """The dataset's documents, filtered by `keywords` (part of the name), `name`, `id`,
    `run` state(s), `suffix` and creation time; `total` counts all matches."""
    items, total = await documents.list_documents(current_user(), dataset_id, query_args)
    return ok(DocumentPage(docs=[document_out(item) for item in items], total=total))


def content_disposition(name: str, suffix: str) -> str:
    """`attachment` with the name twice (RFC 6266): an ASCII fallback any client reads,
    and the exact UTF-8 name as RFC 5987's `filename*`. Neither carries control or bidi
    characters, whatever a name stored before the upload's cleaning rule holds: a saved
    `exe.pdf` must not show as `fdp.exe`."""
    name = "".join(char for char in name if not hidden_control(char))
    fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = "".join(c if c.isprintable() and c not in '"\\' else "_" for c in fallback)
    if not fallback.strip(" ._"):
        fallback = f"document.{suffix}"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@blueprint.get("/<id:document_id>")
@authenticated
@document_response(DocumentFile, 200)
async def download_document(dataset_id: str, document_id: str) -> Response:
    """The original file, as uploaded, with its media type and name. `Range: bytes=a-b`
    (one range) answers 206 with that part, streamed from a ranged read of storage."""
    document = await documents.get_document(current_user(), dataset_id, document_id)
    storage = document_storage(current_app.config["SETTINGS"])
    await documents.check_stored(document, storage)
    try:
        part = requested_range(request.headers.get("Range"), document.size)
    except RangeNotSatisfiable:
        return range_not_satisfiable(document.size)
    start, end = part or (0, document.size)
    response = Response(
        storage.read_chunks(document.location, start, end),
        status=206 if part else 200,
        mimetype=document.content_type,
        headers={
            "Content-Disposition": content_disposition(document.name, document.suffix),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Cache-Control": "private, no-cache",
            "Accept-Ranges": "bytes",
        },
    )
    if part:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{document.size}"
    response.content_length = end - start
    return response


async def update(dataset_id: str, document_id: str, data: DocumentUpdate):
    document = await documents.update_document(current_user(), dataset_id, document_id, data)
    return ok(document_out(document))


@blueprint.put("/<id:document_id>")
@authenticated
@validate_request(DocumentUpdate)
@validate_response(Envelope[DocumentOut])
async def update_document(dataset_id: str, document_id: str, data: DocumentUpdate):
    """Change `name` (keeping its extension), `chunk_method`, `parser_config` (merged;
    both take effect at the next parse), `enabled` (1/0 or true/false) or `meta_fields`."""
    return await update(dataset_id, document_id, data)


@blueprint.patch("/<id:document_id>")
@authenticated
@validate_request(DocumentUpdate)
@validate_response(Envelope[DocumentOut])
async def patch_document(dataset_id: str, document_id: str, data: DocumentUpdate):
    """The same update as PUT (RAGFlow's SDK sends PATCH)."""
    return await update(dataset_id, document_id, data)


@blueprint.delete("")
@authenticated
@validate_request(DeleteSelection)
@validate_response(Envelope[None])
async def delete_documents(dataset_id: str, data: DeleteSelection):
    """Delete documents with their files and chunks (parsing stops): `ids` (all or
    nothing), or all of the dataset's with `delete_all: true`; a body naming neither
    (`{}`) is a 422."""
    settings = current_app.config["SETTINGS"]
    await documents.delete_documents(
        current_user(),
        dataset_id,
        data.ids,
        data.everything,
        document_storage(settings),
        search_store(),
    )
    return ok(None)


@blueprint.post("/status")
@authenticated
@validate_request(StatusRequest)
@validate_response(Envelope[StatusBatch])
async def documents_status(dataset_id: str, data: StatusRequest):
    """Each named document's state as QAnything's get_files_statu: `gray` (waiting or
    parsing), `green` (parsed), `red` (failed or cancelled), with totals per colour."""
    return ok(await documents.status_batch(current_user(), dataset_id, data.ids))
