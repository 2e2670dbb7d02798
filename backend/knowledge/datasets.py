"""Datasets (RAGFlow's knowledge bases) and RAGFlow's rules for them.

A dataset belongs to one user; another user's dataset id answers 404 everywhere, as an
unknown id does. Names are unique per owner regardless of case. The embedding model is
fixed once the dataset has chunks (its vectors would no longer compare). Deleting a
dataset removes its rows first, so the ingest jobs still working on its documents find
their run gone and stop, then its files and its indexed chunks.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.functions import Count, Sum
from tortoise.transactions import in_transaction

from backend.errors import BadRequest, Conflict, NotFound
from backend.models import Dataset, Document, User
from backend.models.knowledge import DocumentRun
from backend.models.listing import ragflow_page
from backend.providers.embedding_registry import default_embedding_model, get_embedding_model
from backend.providers.embeddings import EmbeddingSpec
from backend.search.store import SearchStore
from backend.storage.base import FileStorage
from schemas.knowledge import (
    ChunkMethod,
    DatasetCreate,
    DatasetListQuery,
    DatasetUpdate,
    DeleteSelection,
)

# RAGFlow's parser_config defaults per chunk method (api/utils/api_utils.py).
OFF = {"raptor": {"use_raptor": False}, "graphrag": {"use_graphrag": False}}
PARSER_DEFAULTS: dict[ChunkMethod, dict[str, Any]] = {
    ChunkMethod.NAIVE: {
        "chunk_token_num": 512,
        "delimiter": "\n",
        "html4excel": False,
        "layout_recognize": "DeepDOC",
        "auto_keywords": 0,
        "auto_questions": 0,
        **OFF,
    },
    ChunkMethod.QA: OFF,
    ChunkMethod.MANUAL: OFF,
    ChunkMethod.ONE: {},
}


def parser_defaults(method: ChunkMethod | str) -> dict[str, Any]:
    return copy.deepcopy(PARSER_DEFAULTS[ChunkMethod(method)])


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def embedding_model(name: str | None) -> EmbeddingSpec:
    """The served embedding model `name` names (the default when None); 400 otherwise."""
    return default_embedding_model() if name is None else get_embedding_model(name)


def name_key(name: str) -> str:
    return name.casefold()


def duplicate_name(name: str) -> Conflict:
    return Conflict(f"Dataset name '{name}' already exists: choose another name")


async def check_unique_name(user: User, name: str, exclude_id: str | None = None) -> None:
    query = Dataset.filter(owner_id=user.id, name_key=name_key(name))
    if exclude_id is not None:
        query = query.exclude(id=exclude_id)
    if await query.exists():
        raise duplicate_name(name)


async def create_dataset(user: User, data: DatasetCreate) -> Dataset:
    embedding = embedding_model(data.embedding_model)
    await check_unique_name(user, data.name)
    parser_config = parser_defaults(data.chunk_method)
    if data.parser_config is not None:
        parser_config = deep_merge(parser_config, data.parser_config.given())
    try:
        return await Dataset.create(
            owner_id=user.id,
            name=data.name,
            name_key=name_key(data.name),
            avatar=data.avatar,
            description=data.description,
            embedding_model=embedding.id,
            embedding_dimension=embedding.dimension,
            permission=data.permission,
            chunk_method=data.chunk_method,
            parser_config=parser_config,
            similarity_threshold=data.similarity_threshold,
            vector_similarity_weight=data.vector_similarity_weight,
        )
    except IntegrityError as error:  # the same name, created at the same moment
        raise duplicate_name(data.name) from error


async def get_dataset(user: User, dataset_id: str) -> Dataset:
    dataset = await Dataset.get_or_none(id=dataset_id, owner_id=user.id)
    if dataset is None:
        raise NotFound(f"Dataset '{dataset_id}' not found: no dataset of yours has this id")
    return dataset


@dataclass
class DatasetTotals:
    """What a dataset's documents add up to."""

    document_count: int = 0
    chunk_count: int = 0
    token_num: int = 0
    runs: dict[DocumentRun, int] = field(default_factory=dict)


async def dataset_totals(dataset_ids: list[str]) -> dict[str, DatasetTotals]:
    """Counts per dataset, summed by the database in one grouped query."""
    totals: dict[str, DatasetTotals] = defaultdict(DatasetTotals)
    if not dataset_ids:
        return totals
    rows = (
        await Document.filter(dataset_id__in=dataset_ids)
        .annotate(documents=Count("id"), chunks=Sum("chunk_count"), tokens=Sum("token_count"))
        .group_by("dataset_id", "run")
        .values("dataset_id", "run", "documents", "chunks", "tokens")
    )
    for row in rows:
        total = totals[row["dataset_id"]]
        total.document_count += int(row["documents"] or 0)
        total.chunk_count += int(row["chunks"] or 0)
        total.token_num += int(row["tokens"] or 0)
        total.runs[DocumentRun(row["run"])] = int(row["documents"] or 0)
    return totals


async def list_datasets(user: User, query: DatasetListQuery) -> tuple[list[Dataset], int]:
    owned = Dataset.filter(owner_id=user.id)
    if query.id is not None:
        owned = owned.filter(id=query.id)
    if query.name is not None:
        owned = owned.filter(name=query.name)
    if query.ids:
        owned = owned.filter(id__in=query.ids)
    items = await ragflow_page(owned, query, "dataset")
    return items, await owned.count()


async def update_dataset(user: User, dataset_id: str, data: DatasetUpdate) -> Dataset:
    dataset = await get_dataset(user, dataset_id)
    changes = data.model_dump(exclude_unset=True)
    if data.name is not None and data.name != dataset.name:
        await check_unique_name(user, data.name, exclude_id=dataset.id)
        dataset.name, dataset.name_key = data.name, name_key(data.name)
    if data.embedding_model is not None and data.embedding_model != dataset.embedding_model:
        embedding = embedding_model(data.embedding_model)
        chunks = (await dataset_totals([dataset.id]))[dataset.id].chunk_count
        if chunks:
            raise BadRequest(
                f"The embedding model is fixed once a dataset has chunks: this one has {chunks}, "
                f"embedded with '{dataset.embedding_model}'. Delete its documents' chunks "
                "first, or create a new dataset"
            )
        dataset.embedding_model = embedding.id
        dataset.embedding_dimension = embedding.dimension
    if data.chunk_method is not None and data.chunk_method != dataset.chunk_method:
        dataset.chunk_method = data.chunk_method
        if data.parser_config is None:
            dataset.parser_config = parser_defaults(data.chunk_method)
    if data.parser_config is not None:
        dataset.parser_config = deep_merge(dataset.parser_config, data.parser_config.given())
    for name in ("avatar", "description"):
        if name in changes:
            setattr(dataset, name, changes[name])
    for name in ("permission", "pagerank", "similarity_threshold", "vector_similarity_weight"):
        if changes.get(name) is not None:
            setattr(dataset, name, changes[name])
    try:
        await dataset.save()
    except IntegrityError as error:
        raise duplicate_name(dataset.name) from error
    return dataset


async def selected_datasets(user: User, selection: DeleteSelection) -> list[Dataset]:
    """The datasets a delete names: all or nothing, any unknown id is a 404."""
    owned = Dataset.filter(owner_id=user.id)
    if selection.everything:
        return await owned
    ids = selection.ids or []
    found = await owned.filter(id__in=ids) if ids else []
    missing = set(ids) - {dataset.id for dataset in found}
    if missing:
        raise NotFound(f"Datasets not found: {', '.join(sorted(missing))}; nothing was deleted")
    return found


async def delete_datasets(
    user: User, selection: DeleteSelection, files: FileStorage, chunks: SearchStore
) -> int:
    """Delete the selected datasets with their documents, files and chunks."""
    datasets = await selected_datasets(user, selection)
    ids = [dataset.id for dataset in datasets]
    if not ids:
        return 0
    async with in_transaction():
        await Document.filter(dataset_id__in=ids).delete()
        await Dataset.filter(id__in=ids, owner_id=user.id).delete()
    for dataset_id in ids:
        await files.delete_prefix(dataset_id)
        await chunks.delete_dataset(dataset_id)
    return len(ids)
