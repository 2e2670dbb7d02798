"""RAGFlow's list semantics over any model's query: datasets, assistants, sessions.

Datasets (knowledge) and assistants and sessions (services) page the same way, so the
rule lives with the models both layers build on.
"""

from __future__ import annotations

from typing import TypeVar

from tortoise.models import Model
from tortoise.queryset import QuerySet

from backend.errors import NotFound
from schemas.chats import ListQuery

M = TypeVar("M", bound=Model)

ORDER_FIELDS = {"create_time": "created_at", "update_time": "updated_at"}


async def ragflow_page(filters: QuerySet[M], query: ListQuery, kind: str) -> list[M]:
    """RAGFlow's list semantics: optional `id` / `name` filters, ordering by creation or
    update time, paging; filtering by id or name that matches nothing is a 404."""
    if query.id is not None:
        filters = filters.filter(id=query.id)
    if query.name is not None:
        filters = filters.filter(name=query.name)
    field = ORDER_FIELDS[query.orderby]
    items = (
        await filters.order_by(f"-{field}" if query.desc else field, "id")
        .offset(query.offset)
        .limit(query.page_size)
    )
    if not items and (query.id is not None or query.name is not None):
        raise NotFound(f"The {kind} doesn't exist: no {kind} matches the id or name filter")
    return items
