"""Dify's external knowledge API: `POST /api/v1/dify/retrieval`, so a Dify workspace can
use a Sluice dataset as an external knowledge base.

Register `https://<sluice>/api/v1/dify` as the endpoint (Dify appends `/retrieval`), an
API key (`sk-…`) as its key and a dataset id as the External Knowledge ID. It is a thin
mapping onto the retrieval service: `query` is the question, `top_k` the most records,
`score_threshold` the similarity threshold; each chunk found becomes a record.

Errors keep Sluice's envelope (`code` = HTTP status, `message`) and add Dify's
`error_code` / `error_msg`: 1001 when the Authorization header is not `Bearer <key>`,
1002 when the key is refused (both HTTP 401, the API's status for bad credentials),
2001 when the knowledge does not exist for this caller (404: unknown, malformed or
another user's dataset id); any other failure carries its HTTP status as `error_code`.
"""

from __future__ import annotations

import json

from quart import Blueprint, Response, request
from quart_schema import validate_request, validate_response

from backend.errors import NotFound
from backend.http.auth import authenticated, current_user
from backend.http.documented_errors import document_errors
from backend.http.openapi import JSON
from backend.search.retrieval import retrieve
from schemas.dify import DifyRecord, DifyRetrievalRequest, DifyRetrievalResponse
from schemas.ids import is_public_id
from schemas.retrieval import MAX_TOP_K, RetrievalRequest, RetrievedChunk

blueprint = Blueprint("dify", __name__, url_prefix="/api/v1/dify")

PATH = "/api/v1/dify/retrieval"
INVALID_AUTHORIZATION_HEADER = 1001
AUTHORIZATION_FAILED = 1002
KNOWLEDGE_NOT_FOUND = 2001
# Candidates taken from each search leg: RAGFlow's default, more when Dify asks for more.
CANDIDATES = 1024


def well_formed_authorization() -> bool:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(credential.strip())


def dify_error_code(status: int) -> int:
    if status == 401:
        if well_formed_authorization():
            return AUTHORIZATION_FAILED
        return INVALID_AUTHORIZATION_HEADER
    if status == 404:
        return KNOWLEDGE_NOT_FOUND
    return status


@blueprint.after_app_request
async def dify_error_fields(response: Response) -> Response:
    """Add Dify's `error_code` / `error_msg` to every failure on this path."""
    if request.path != PATH or response.status_code < 400 or response.mimetype != JSON:
        return response
    body = await response.get_json()
    if isinstance(body, dict) and "message" in body and "error_code" not in body:
        extra = {"error_code": dify_error_code(response.status_code), "error_msg": body["message"]}
        response.set_data(json.dumps({**body, **extra}))
    return response


def record(chunk: RetrievedChunk) -> DifyRecord:
    return DifyRecord(
        content=chunk.content,
        score=chunk.similarity,
        title=chunk.document_name,
        metadata={
            "document_id": chunk.document_id,
            "dataset_id": chunk.dataset_id,
            "chunk_id": chunk.id,
            "vector_similarity": chunk.vector_similarity,
            "term_similarity": chunk.term_similarity,
        },
    )


@blueprint.post("/retrieval")
@document_errors(404, 502)
@authenticated
@validate_request(DifyRetrievalRequest)
@validate_response(DifyRetrievalResponse)
async def dify_retrieval(data: DifyRetrievalRequest):
    """Dify's external knowledge retrieval over one of your datasets (`knowledge_id`):
    at most `top_k` records scoring at least `score_threshold`, best first. A dataset that
    is not yours (or does not exist) is a 404 with Dify's `error_code` 2001."""
    if not is_public_id(data.knowledge_id):
        raise NotFound(f"Knowledge '{data.knowledge_id[:64]}' does not exist: not a dataset id")
    setting = data.retrieval_setting
    found = await retrieve(
        current_user().id,
        RetrievalRequest(
            question=data.query,
            dataset_ids=[data.knowledge_id],
            page_size=setting.top_k,
            similarity_threshold=setting.score_threshold,
            top_k=min(max(CANDIDATES, setting.top_k), MAX_TOP_K),
        ),
    )
    return DifyRetrievalResponse(records=[record(chunk) for chunk in found.chunks])
