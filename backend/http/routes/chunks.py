"""A document's chunks at RAGFlow's `/api/v1/datasets/{id}/documents/{doc_id}/chunks`:
list, read, add, edit (PUT, or PATCH as RAGFlow's SDK sends) and delete."""

from __future__ import annotations

from quart import Blueprint, current_app
from quart_schema import validate_querystring, validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.documented_errors import document_errors
from backend.http.responses import ok
from backend.http.routes.documents import document_out
from backend.knowledge import chunks
from backend.knowledge.chunks import chunk_out
from backend.search.stores import search_store
from schemas.chunks import (
    ChunkCreate,
    ChunkCreated,
    ChunkDelete,
    ChunkListQuery,
    ChunkOut,
    ChunkPage,
    ChunkUpdate,
)
from schemas.envelope import Envelope

blueprint = Blueprint(
    "chunks",
    __name__,
    url_prefix="/api/v1/datasets/<id:dataset_id>/documents/<id:document_id>/chunks",
)


@blueprint.get("")
@authenticated
@validate_querystring(ChunkListQuery)
@validate_response(Envelope[ChunkPage])
async def list_chunks(dataset_id: str, document_id: str, query_args: ChunkListQuery):
    """The document's chunks in document order, with the document itself (`doc`) and
    the match count (`total`): `keywords` keeps chunks containing every word of it
    (the search analyzer's words, CJK segmented), `id` just that chunk."""
    document, records, total = await chunks.list_chunks(
        current_user(), dataset_id, document_id, query_args, search_store()
    )
    return ok(
        ChunkPage(
            chunks=[chunk_out(record) for record in records],
            doc=document_out(document),
            total=total,
        )
    )


@blueprint.post("")
@document_errors(409)
@authenticated
@validate_request(ChunkCreate)
@validate_response(Envelope[ChunkCreated], 201)
async def add_chunk(dataset_id: str, document_id: str, data: ChunkCreate):
    """Add a chunk by hand. Its words are searchable at once; it is embedded (by its
    `questions` if any, else its content) on the ingest worker, and the answer waits a
    few seconds for that: `embedded` says whether it is done (if not, the vector
    follows). The same content added twice stays one chunk (its id comes from it)."""
    app = current_app._get_current_object()
    record = await chunks.add_chunk(
        current_user(),
        dataset_id,
        document_id,
        data,
        store=search_store(),
        redis=app.config["REDIS"],
        settings=app.config["SETTINGS"],
    )
    return ok(ChunkCreated(chunk=chunk_out(record)), 201)


@blueprint.delete("")
@document_errors(409)
@authenticated
@validate_request(ChunkDelete)
@validate_response(Envelope[None])
async def delete_chunks(dataset_id: str, document_id: str, data: ChunkDelete):
    """Delete `chunk_ids` (all or nothing: an id the document lacks is a 404), or every
    chunk of the document with `delete_all: true` and no ids."""
    await chunks.delete_chunks(
        current_user(), dataset_id, document_id, data.chunk_ids, data.delete_all, search_store()
    )
    return ok(None)


@blueprint.get("/<id:chunk_id>")
@authenticated
@validate_response(Envelope[ChunkOut])
async def get_chunk(dataset_id: str, document_id: str, chunk_id: str):
    """One chunk of the document."""
    record = await chunks.get_chunk(
        current_user(), dataset_id, document_id, chunk_id, search_store()
    )
    return ok(chunk_out(record))


async def update(dataset_id: str, document_id: str, chunk_id: str, data: ChunkUpdate):
    app = current_app._get_current_object()
    record = await chunks.update_chunk(
        current_user(),
        dataset_id,
        document_id,
        chunk_id,
        data,
        store=search_store(),
        redis=app.config["REDIS"],
        settings=app.config["SETTINGS"],
    )
    return ok(chunk_out(record))


@blueprint.put("/<id:chunk_id>")
@document_errors(409)
@authenticated
@validate_request(ChunkUpdate)
@validate_response(Envelope[ChunkOut])
async def put_chunk(dataset_id: str, document_id: str, chunk_id: str, data: ChunkUpdate):
    """Change `content`, `important_keywords`, `questions` or `available` (false hides
    the chunk from searches). New content or questions are embedded again on the ingest
    worker (`embedded` as for an added chunk)."""
    return await update(dataset_id, document_id, chunk_id, data)


@blueprint.patch("/<id:chunk_id>")
@document_errors(409)
@authenticated
@validate_request(ChunkUpdate)
@validate_response(Envelope[ChunkOut])
async def patch_chunk(dataset_id: str, document_id: str, chunk_id: str, data: ChunkUpdate):
    """The same update as PUT (RAGFlow's SDK sends PATCH)."""
    return await update(dataset_id, document_id, chunk_id, data)
