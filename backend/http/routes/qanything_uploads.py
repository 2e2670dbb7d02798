"""QAnything's multipart routes: `document_parser_embedding` (files uploaded into a
knowledge base and queued for parsing and embedding) and `document_parser` (one file
parsed by the ingest worker and its chunks returned, nothing stored).

The files stream straight to storage (backend/http/multipart_files.py), so the
knowledge base must be known before the first file arrives: `user_id` and `kb_id` are
form fields sent before the files (as QAnything's clients, e.g. `requests` with
`data=` and `files=`, send them). `mode=soft` (the default) skips a file whose name the
knowledge base already has; `strong` uploads it anyway. Error codes as in
backend/http/routes/qanything.py.
"""

from __future__ import annotations

import asyncio
import uuid

from quart import Blueprint, current_app, request
from quart_schema import DataSource, document_request, validate_response

from backend.errors import BadRequest
from backend.http.auth import authenticated, current_user
from backend.http.body_limits import body_limit
from backend.http.documented_errors import document_errors
from backend.http.multipart_files import read_multipart
from backend.http.routes.documents import document_upload_body, duplicate_mode
from backend.http.routes.qanything import check_user_id, known_kb_id
from backend.knowledge import datasets, documents, parse_queue
from backend.knowledge.document_parser import OneFileUpload, parse_in_worker
from backend.knowledge.document_uploads import DocumentUpload
from backend.knowledge.file_parts import FilePart
from backend.models import Dataset, Document
from backend.settings import Settings
from backend.storage.configured import document_storage
from schemas.documents import UploadQuery
from schemas.qanything import (
    DocumentParserEmbeddingForm,
    DocumentParserEmbeddingReply,
    DocumentParserForm,
    DocumentParserReply,
    FileEntry,
    ParserDocument,
    ParserMetadata,
    QAnythingRequest,
)

blueprint = Blueprint("qanything_uploads", __name__, url_prefix="/api/qanything")


class KnowledgeBaseUpload:
    """A file sink that opens the knowledge base named by the fields read so far when
    the first file starts, then streams into it like the documents upload."""

    def __init__(self, fields: dict[str, str], settings: Settings) -> None:
        self.fields = fields
        self.settings = settings
        self.upload: DocumentUpload | None = None

    async def open(self) -> DocumentUpload:
        check_user_id(QAnythingRequest(user_id=self.fields.get("user_id")))
        if "kb_id" not in self.fields:
            raise BadRequest("Send kb_id as a form field, before the files")
        dataset = await datasets.get_dataset(current_user(), known_kb_id(self.fields["kb_id"]))
        return DocumentUpload(dataset, document_storage(self.settings), self.settings)

    async def start(self, part: FilePart) -> None:
        if self.upload is None:
            self.upload = await self.open()
        await self.upload.start(part)

    async def write(self, data: bytes) -> None:
        assert self.upload is not None
        await self.upload.write(data)

    async def finish(self) -> None:
        assert self.upload is not None
        await self.upload.finish()

    async def discard(self) -> None:
        if self.upload is not None:
            await self.upload.discard()


def file_entry(document: Document) -> FileEntry:
    status = documents.file_status(document)
    return FileEntry(
        file_id=document.id,
        file_name=document.name,
        status=status.status.value,
        bytes=document.size,
        timestamp=status.timestamp,
    )


@blueprint.post("/document_parser_embedding")
@document_errors(403, 404, 415)
@body_limit(document_upload_body)
@authenticated
@document_request(DocumentParserEmbeddingForm, source=DataSource.FORM_MULTIPART)
@validate_response(DocumentParserEmbeddingReply)
async def document_parser_embedding():
    """Upload `files` into the knowledge base `kb_id` and queue them for parsing and
    embedding (status gray until parsed). The documents' ids are Sluice's (`data`);
    QAnything's `file_ids` are not used. Skipped duplicates (mode soft) are in
    `skipped`."""
    app = current_app._get_current_object()
    settings = app.config["SETTINGS"]
    fields: dict[str, str] = {}
    sink = KnowledgeBaseUpload(fields, settings)
    try:
        await read_multipart(request.body, request.headers.get("Content-Type"), sink, fields)
        mode = duplicate_mode(fields, UploadQuery())
        upload = sink.upload or await sink.open()
    except BaseException:
        await asyncio.shield(sink.discard())
        raise
    created, skipped = await asyncio.shield(upload.commit(mode))
    if created:
        await parse_queue.start_parsing(
            current_user(),
            upload.dataset.id,
            [document.id for document in created],
            redis=app.config["REDIS"],
            settings=settings,
        )
    queued = await Document.filter(id__in=[document.id for document in created])
    by_id = {document.id: document for document in queued}
    return DocumentParserEmbeddingReply(
        msg="success: the files are queued for parsing",
        data=[file_entry(by_id[document.id]) for document in created],
        skipped=skipped,
    )


@blueprint.post("/document_parser")
@document_errors(403, 404, 415, 503)
@body_limit(document_upload_body)
@authenticated
@document_request(DocumentParserForm, source=DataSource.FORM_MULTIPART)
@validate_response(DocumentParserReply)
async def document_parser():
    """Parse one uploaded `file` into chunks, as a document of the knowledge base
    `kb_id` (optional) would be, and return them without storing anything. The ingest
    worker parses; 503 when it does not answer in time. Size and type limits as for
    document uploads (413, 415); a file that cannot be parsed is a 422."""
    app = current_app._get_current_object()
    settings = app.config["SETTINGS"]
    fields: dict[str, str] = {}
    upload = OneFileUpload(settings, document_storage(settings))
    try:
        await read_multipart(request.body, request.headers.get("Content-Type"), upload, fields)
        user_id = fields.get("user_id")
        check_user_id(QAnythingRequest(user_id=user_id))
        kb_id = fields.get("kb_id", "").strip() or None
        dataset: Dataset | None = None
        if kb_id is not None:
            dataset = await datasets.get_dataset(current_user(), known_kb_id(kb_id))
        preview = upload.preview(dataset, current_user().id)
        await upload.keep()
        result = await parse_in_worker(app.config["REDIS"], settings, preview)
    finally:
        await upload.discard()
    file_id = uuid.uuid4().hex
    return DocumentParserReply(
        msg="document parser success",
        parser_documents=[
            ParserDocument(
                metadata=ParserMetadata(
                    user_id=user_id or "",
                    kb_id=kb_id,
                    file_id=file_id,
                    file_name=preview.name,
                    chunk_id=index,
                    file_path=preview.name,
                    faq_dict=chunk.faq,
                ),
                page_content=chunk.content,
            )
            for index, chunk in enumerate(result.chunks)
        ],
    )
