"""Parsing at RAGFlow's `/api/v1/datasets/{id}/chunks` (start: POST, stop: DELETE) and
the FAQ import (QAnything's upload_faqs) at `/api/v1/datasets/{id}/faqs`."""

from __future__ import annotations

from quart import Blueprint, current_app
from quart_schema import validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.body_limits import body_limit
from backend.http.documented_errors import document_errors
from backend.http.responses import ok
from backend.http.routes.documents import document_out
from backend.knowledge import faqs, parse_queue
from backend.search.stores import search_store
from backend.settings import Settings
from backend.storage.configured import document_storage
from schemas.chunks import FaqImport, FaqImported, ParseRequest
from schemas.envelope import Envelope

blueprint = Blueprint("parsing", __name__, url_prefix="/api/v1/datasets/<id:dataset_id>")


@blueprint.post("/chunks")
@document_errors(409)
@authenticated
@validate_request(ParseRequest)
@validate_response(Envelope[None])
async def start_parsing(dataset_id: str, data: ParseRequest):
    """Start parsing documents on the ingest worker: each becomes RUNNING (progress 0)
    and goes through parse, chunk, embed and index; watch it in the document list, in
    POST .../documents/status, or live on GET /api/v1/events. Re-parsing a parsed
    document replaces its chunks in one step when done. A document already RUNNING is a
    409 (stop it first); any id the dataset lacks is a 404 and nothing starts."""
    app = current_app._get_current_object()
    await parse_queue.start_parsing(
        current_user(),
        dataset_id,
        data.document_ids,
        redis=app.config["REDIS"],
        settings=app.config["SETTINGS"],
    )
    return ok(None)


@blueprint.delete("/chunks")
@document_errors(409)
@authenticated
@validate_request(ParseRequest)
@validate_response(Envelope[None])
async def stop_parsing(dataset_id: str, data: ParseRequest):
    """Stop parsing documents: they become CANCEL, their jobs stop within a second, and
    their chunks are removed (chunk_count 0). Every document named must be RUNNING,
    else 409 and nothing is stopped."""
    app = current_app._get_current_object()
    await parse_queue.stop_parsing(
        current_user(),
        dataset_id,
        data.document_ids,
        redis=app.config["REDIS"],
        settings=app.config["SETTINGS"],
        store=search_store(),
    )
    return ok(None)


def faq_body_limit(settings: Settings) -> int:
    return settings.document_max_bytes


@blueprint.post("/faqs")
@body_limit(faq_body_limit)
@authenticated
@validate_request(FaqImport)
@validate_response(Envelope[FaqImported], 201)
async def import_faqs(dataset_id: str, data: FaqImport):
    """Import up to 1,000 question/answer pairs as one FAQ document (a CSV of the
    pairs, chunk method `qa`), queued for parsing at once: one chunk per pair, found by
    its question. A question repeated in the call is imported once (its last answer)."""
    app = current_app._get_current_object()
    settings = app.config["SETTINGS"]
    document, pairs = await faqs.import_faqs(
        current_user(),
        dataset_id,
        data.faqs,
        files=document_storage(settings),
        redis=app.config["REDIS"],
        settings=settings,
    )
    return ok(FaqImported(document=document_out(document), pairs=pairs), 201)
