"""RAGFlow's `POST /api/v1/retrieval`: hybrid search over the caller's datasets."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.documented_errors import document_errors
from backend.http.responses import ok
from backend.search.retrieval import retrieve
from schemas.envelope import Envelope
from schemas.retrieval import RetrievalRequest, RetrievalResult

blueprint = Blueprint("retrieval", __name__, url_prefix="/api/v1/retrieval")


@blueprint.post("")
@document_errors(404, 502)
@authenticated
@validate_request(RetrievalRequest)
@validate_response(Envelope[RetrievalResult])
async def retrieval(data: RetrievalRequest):
    """Chunks of your datasets matching `question`: keyword (BM25) and vector candidates
    fused into one similarity, thresholded, optionally reranked (`rerank_id`), paged.
    Datasets searched together must share an embedding model (400 otherwise); another
    user's dataset or document ids are 404. See docs/retrieval.md."""
    return ok(await retrieve(current_user().id, data))
