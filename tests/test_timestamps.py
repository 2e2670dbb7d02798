"""A new row's `updated_at` equals its `created_at`; a later save moves it
(backend/models/timestamps.py). Tortoise read the clock once per field, and a create whose
two reads straddled a millisecond answered RAGFlow's `update_time` one past `create_time`."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from unittest import mock

from tortoise import timezone

from backend.models import Assistant, ChatSession, Dataset, User
from tests.support.accounts import create_account


def ticking_clock():
    """A clock that moves a millisecond at every read, as a slow create's two reads may."""
    start = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    ticks = itertools.count()
    return mock.patch.object(
        timezone, "localtime", side_effect=lambda *_: start + timedelta(milliseconds=next(ticks))
    )


async def test_a_new_row_is_updated_when_it_was_created(client, settings) -> None:
    account = await create_account(settings, password=False)
    with ticking_clock():
        assistant = await Assistant.create(owner_id=account.id, name="a")
        session = await ChatSession.create(assistant_id=assistant.id, user_id=account.id)
        dataset = await Dataset.create(
            owner_id=account.id, name="d", name_key="d", embedding_model="m"
        )
        user = await User.create(username=f"t{account.id}", password_hash="x")
    for row in (assistant, session, dataset, user):
        stored = await type(row).get(pk=row.pk)
        assert stored.updated_at == stored.created_at == row.created_at, type(row).__name__


async def test_a_later_save_takes_the_clock(client, settings) -> None:
    account = await create_account(settings, password=False)
    with ticking_clock():
        assistant = await Assistant.create(owner_id=account.id, name="a")
        assistant.name = "b"
        await assistant.save()
    stored = await Assistant.get(pk=assistant.pk)
    assert stored.updated_at > stored.created_at
