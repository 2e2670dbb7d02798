"""QAnything's RAG server façade under `/api/qanything/`, for clients written for it.

Each route is a thin mapping onto the services behind Sluice's own API: datasets are
QAnything's knowledge bases (`kb_id`), documents its files (`file_id`), retrieval its
`question_rag_search`. Authentication is Sluice's (a bearer token or `sk-` API key);
QAnything's `user_id` must still be sent and name the caller (its id or username).

Success is HTTP 200 with `{"code": 200, "msg": …}` and the route's fields. A failure is
Sluice's envelope with QAnything's `msg` added and, where QAnything has one, its code:
2002 `user_id` missing (400), 2005 `user_id` not the caller (403), 2003 a knowledge base
or file not found for the caller (404); other failures keep the HTTP status as `code`.
"""

from __future__ import annotations

import json
from datetime import UTC

from quart import Blueprint, Response, current_app, request
from quart_schema import validate_request, validate_response

from backend.errors import BadRequest, Forbidden, NotFound
from backend.http.auth import authenticated, current_user
from backend.http.body_limits import body_limit
from backend.http.documented_errors import document_errors
from backend.http.openapi import JSON
from backend.http.routes.parsing import faq_body_limit
from backend.knowledge import datasets, documents, faqs
from backend.knowledge.chunk_uploads import upload_chunks
from backend.knowledge.document_uploads import clean_name
from backend.search.retrieval import retrieve
from backend.search.stores import search_store
from backend.storage.configured import document_storage
from schemas.ids import is_public_id
from schemas.knowledge import DeleteSelection
from schemas.qanything import (
    ChunkEmbedding,
    ChunkEmbeddingReply,
    DeleteKnowledgeBase,
    FaqFileStatus,
    FileEntry,
    FilesStatusReply,
    FilesStatusRequest,
    QAnythingReply,
    QAnythingRequest,
    RagSearchReply,
    RagSearchRequest,
    RetrievalDocument,
    UploadFaqs,
    UploadFaqsReply,
)
from schemas.retrieval import RetrievalRequest

blueprint = Blueprint("qanything", __name__, url_prefix="/api/qanything")

PREFIX = "/api/qanything/"
USER_ID_MISSING = 2002
KB_NOT_FOUND = 2003
USER_ID_NOT_USABLE = 2005


@blueprint.after_app_request
async def qanything_error_fields(response: Response) -> Response:
    """QAnything clients read `msg`; a not-found is its 2003."""
    if not request.path.startswith(PREFIX) or response.status_code < 400:
        return response
    if response.mimetype != JSON:
        return response
    body = await response.get_json()
    if isinstance(body, dict) and "message" in body and "msg" not in body:
        code = KB_NOT_FOUND if body.get("code") == 404 else body.get("code")
        response.set_data(json.dumps({**body, "code": code, "msg": body["message"]}))
    return response


def check_user_id(data: QAnythingRequest) -> None:
    user = current_user()
    if not (data.user_id or "").strip():
        raise BadRequest("user_id is required: send your user id or username", code=USER_ID_MISSING)
    if data.user_id not in (str(user.id), user.username):
        raise Forbidden(
            f"user_id '{data.user_id[:64]}' is not usable: send your own user id or username "
            "(the one your credential belongs to)",
            code=USER_ID_NOT_USABLE,
        )


def known_kb_id(kb_id: str) -> str:
    if not is_public_id(kb_id):
        raise NotFound(f"Knowledge base '{kb_id[:64]}' not found: no dataset of yours has this id")
    return kb_id


@blueprint.post("/delete_knowledge_base")
@document_errors(403, 404)
@authenticated
@validate_request(DeleteKnowledgeBase)
@validate_response(QAnythingReply)
async def delete_knowledge_base(data: DeleteKnowledgeBase):
    """Delete a knowledge base (dataset) with its files, or only `file_ids` of it."""
    check_user_id(data)
    kb_id = known_kb_id(data.kb_id)
    settings = current_app.config["SETTINGS"]
    files, store = document_storage(settings), search_store()
    if data.file_ids is None:
        selection = DeleteSelection(ids=[kb_id])
        await datasets.delete_datasets(current_user(), selection, files, store)
        return QAnythingReply(msg=f"Knowledge Base {kb_id} delete success")
    deleted = await documents.delete_documents(
        current_user(), kb_id, data.file_ids, False, files, store
    )
    return QAnythingReply(msg=f"Knowledge Base {kb_id}: {deleted} files deleted")


@blueprint.post("/get_files_statu")
@document_errors(403, 404)
@authenticated
@validate_request(FilesStatusRequest)
@validate_response(FilesStatusReply)
async def get_files_statu(data: FilesStatusRequest):
    """Each named file's status (gray: waiting or parsing, green: parsed, red: failed),
    with totals per colour."""
    check_user_id(data)
    batch = await documents.status_batch(current_user(), known_kb_id(data.kb_id), data.file_ids)
    return FilesStatusReply(msg="success", data=batch)


@blueprint.post("/question_rag_search")
@document_errors(403, 404, 502)
@authenticated
@validate_request(RagSearchRequest)
@validate_response(RagSearchReply)
async def question_rag_search(data: RagSearchRequest):
    """Chunks of the knowledge bases matching `question` (Sluice's hybrid retrieval,
    best first, at most `top_k`), as QAnything's retrieval_documents."""
    check_user_id(data)
    user = current_user()
    found = await retrieve(
        user.id,
        RetrievalRequest(
            question=data.question,
            dataset_ids=[known_kb_id(kb_id) for kb_id in dict.fromkeys(data.kb_ids)],
            page_size=data.top_k,
        ),
    )
    return RagSearchReply(
        msg="success",
        question=data.question,
        retrieval_documents=[
            RetrievalDocument(
                page_content=chunk.content,
                metadata={
                    "user_id": data.user_id,
                    "kb_id": chunk.dataset_id,
                    "file_id": chunk.document_id,
                    "file_name": chunk.document_name,
                    "chunk_id": chunk.id,
                    "faq_dict": {},
                    "score": chunk.similarity,
                    "retrieval_query": data.question,
                },
            )
            for chunk in found.chunks
        ],
    )


@blueprint.post("/upload_faqs")
@body_limit(faq_body_limit)
@document_errors(403, 404)
@authenticated
@validate_request(UploadFaqs)
@validate_response(UploadFaqsReply)
async def upload_faqs(data: UploadFaqs):
    """Up to 1,000 question/answer pairs, stored as one FAQ document of the knowledge
    base and queued for parsing (status gray until parsed; one chunk per pair)."""
    check_user_id(data)
    app = current_app._get_current_object()
    settings = app.config["SETTINGS"]
    document, pairs = await faqs.import_faqs(
        current_user(),
        known_kb_id(data.kb_id),
        data.faqs,
        files=document_storage(settings),
        redis=app.config["REDIS"],
        settings=settings,
    )
    status = documents.file_status(document)
    entry = FaqFileStatus(
        file_id=document.id,
        file_name=document.name,
        status=status.status.value,
        length=pairs,
        timestamp=f"{document.created_at.astimezone(UTC):%Y%m%d%H%M}",
    )
    return UploadFaqsReply(msg="success: the FAQs are queued for parsing", data=[entry])


@blueprint.post("/chunk_embedding")
@document_errors(403, 404)
@authenticated
@validate_request(ChunkEmbedding)
@validate_response(ChunkEmbeddingReply)
async def chunk_embedding(data: ChunkEmbedding):
    """Texts already split (`chunk_datas`) become one text document whose chunks are
    exactly those texts, searchable at once and embedded by the ingest worker. The
    document's id is Sluice's (`data.file_id`); QAnything's `file_id` is not used."""
    check_user_id(data)
    app = current_app._get_current_object()
    settings = app.config["SETTINGS"]
    document = await upload_chunks(
        current_user(),
        known_kb_id(data.kb_id),
        clean_name(data.file_name) if data.file_name else None,
        data.chunk_datas,
        files=document_storage(settings),
        store=search_store(),
        redis=app.config["REDIS"],
        settings=settings,
    )
    status = documents.file_status(document)
    entry = FileEntry(
        file_id=document.id,
        file_name=document.name,
        status=status.status.value,
        bytes=document.size,
        timestamp=status.timestamp,
    )
    return ChunkEmbeddingReply(msg="success: the chunks are searchable", data=entry)
