"""Datasets at RAGFlow's `/api/v1/datasets`: create, list, update, delete by ids."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from quart import Blueprint, current_app
from quart_schema import validate_querystring, validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.documented_errors import document_errors
from backend.http.responses import ok
from backend.knowledge import datasets
from backend.knowledge.datasets import DatasetTotals
from backend.models import Dataset
from backend.models.knowledge import DocumentRun
from backend.search.stores import search_store
from backend.storage.configured import document_storage
from schemas.envelope import Envelope
from schemas.knowledge import (
    DatasetCreate,
    DatasetList,
    DatasetListQuery,
    DatasetOut,
    DatasetUpdate,
    DeleteSelection,
)

blueprint = Blueprint("datasets", __name__, url_prefix="/api/v1/datasets")


def milliseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def http_date(moment: datetime) -> str:
    """RAGFlow's `create_date` form: `Mon, 28 Apr 2025 18:40:41 GMT`."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def dataset_out(dataset: Dataset, totals: DatasetTotals) -> DatasetOut:
    owner = str(dataset.owner_id)
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        avatar=dataset.avatar,
        description=dataset.description,
        embedding_model=dataset.embedding_model,
        permission=dataset.permission,
        chunk_method=dataset.chunk_method,
        parser_config=dataset.parser_config,
        language=dataset.language,
        pagerank=dataset.pagerank,
        similarity_threshold=dataset.similarity_threshold,
        vector_similarity_weight=dataset.vector_similarity_weight,
        document_count=totals.document_count,
        chunk_count=totals.chunk_count,
        token_num=totals.token_num,
        unstart_count=totals.runs.get(DocumentRun.UNSTART, 0),
        running_count=totals.runs.get(DocumentRun.RUNNING, 0),
        cancel_count=totals.runs.get(DocumentRun.CANCEL, 0),
        done_count=totals.runs.get(DocumentRun.DONE, 0),
        fail_count=totals.runs.get(DocumentRun.FAIL, 0),
        tenant_id=owner,
        created_by=owner,
        create_time=milliseconds(dataset.created_at),
        create_date=http_date(dataset.created_at),
        update_time=milliseconds(dataset.updated_at),
        update_date=http_date(dataset.updated_at),
    )


async def with_totals(dataset: Dataset) -> DatasetOut:
    return dataset_out(dataset, (await datasets.dataset_totals([dataset.id]))[dataset.id])


@blueprint.post("")
@document_errors(409)
@authenticated
@validate_request(DatasetCreate)
@validate_response(Envelope[DatasetOut], 201)
async def create_dataset(data: DatasetCreate):
    """Create a dataset (RAGFlow's defaults: chunk_method `naive`, permission `me`, the
    chunk method's parser_config). A name the caller already uses, in any case, is a 409."""
    dataset = await datasets.create_dataset(current_user(), data)
    return ok(await with_totals(dataset), 201)


@blueprint.get("")
@document_errors(404)
@authenticated
@validate_querystring(DatasetListQuery)
@validate_response(DatasetList)
async def list_datasets(query_args: DatasetListQuery):
    """The caller's datasets with their document, chunk and token totals and counts of
    documents per parsing state; filtering by an `id` or `name` that matches none is a 404."""
    items, total = await datasets.list_datasets(current_user(), query_args)
    totals = await datasets.dataset_totals([item.id for item in items])
    return DatasetList(
        data=[dataset_out(item, totals[item.id]) for item in items], total_datasets=total
    )


@blueprint.put("/<id:dataset_id>")
@document_errors(409)
@authenticated
@validate_request(DatasetUpdate)
@validate_response(Envelope[DatasetOut])
async def update_dataset(dataset_id: str, data: DatasetUpdate):
    """Change the fields sent. `embedding_model` only while the dataset has no chunks (400
    otherwise); `parser_config` is merged into the stored one."""
    dataset = await datasets.update_dataset(current_user(), dataset_id, data)
    return ok(await with_totals(dataset))


@blueprint.delete("")
@document_errors(404)
@authenticated
@validate_request(DeleteSelection)
@validate_response(Envelope[None])
async def delete_datasets(data: DeleteSelection):
    """Delete datasets with their documents, files and chunks; parsing jobs still running
    on them stop. `ids` (all or nothing), or every dataset of the caller with
    `delete_all: true`; a body naming neither (`{}`) is a 422."""
    settings = current_app.config["SETTINGS"]
    await datasets.delete_datasets(current_user(), data, document_storage(settings), search_store())
    return ok(None)
