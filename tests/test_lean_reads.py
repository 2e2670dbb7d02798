"""The per-request reads written as fixed SQL (backend/models/lean_reads.py) return what
Tortoise's own queries return, on SQLite and PostgreSQL, and build no query per call."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

from tortoise.queryset import QuerySet

from backend.models import ApiKey, Assistant, ChatSession, Message, Task, User
from backend.models.chats import Role
from backend.models.ids import new_id
from backend.models.lean_reads import (
    history_page,
    live_api_key,
    owned_session,
    owned_task,
    user_by_id,
)
from tests.support.accounts import create_account


def fields_of(instance) -> dict:
    return {name: getattr(instance, name) for name in instance._meta.fields_db_projection}


async def test_user_by_id_is_the_orm_row(client, settings) -> None:
    account = await create_account(settings, password=False)
    await User.filter(id=account.id).update(disabled=True, nickname="n", email=None)
    lean, orm = await user_by_id(account.id), await User.get(id=account.id)
    assert fields_of(lean) == fields_of(orm)
    assert lean.created_at.tzinfo is not None and lean.disabled is True
    assert await user_by_id(account.id + 10_000) is None


async def test_owned_session_is_select_related_and_refuses_others(client, settings) -> None:
    owner = await create_account(settings, password=False)
    other = await create_account(settings, password=False)
    assistant = await Assistant.create(
        owner_id=owner.id,
        name="a",
        llm={"model_name": "m", "temperature": 0.5},
        prompt={"prompt": "Be brief {knowledge}"},
        preset_messages=[{"role": "system", "content": "s"}],
        dataset_ids=["d1"],
        public=True,
    )
    session = await ChatSession.create(assistant_id=assistant.id, user_id=owner.id, name="n")
    lean = await owned_session(session.id, owner.id)
    orm = await ChatSession.filter(id=session.id).select_related("assistant").first()
    assert fields_of(lean) == fields_of(orm)
    assert fields_of(lean.assistant) == fields_of(orm.assistant)
    assert lean.assistant.llm == {"model_name": "m", "temperature": 0.5}
    assert await owned_session(session.id, other.id) is None
    assert await owned_session("nope", owner.id) is None


async def test_history_page_is_values_list_newest_first(client, settings) -> None:
    owner = await create_account(settings, password=False)
    assistant = await Assistant.create(owner_id=owner.id, name="a")
    session = await ChatSession.create(assistant_id=assistant.id, user_id=owner.id)
    for index in range(5):
        role = Role.USER if index % 2 == 0 else Role.ASSISTANT
        await Message.create(
            session_id=session.id, role=role, content=[{"type": "text", "text": f"m{index} é"}]
        )
    orm = (
        await Message.filter(session_id=session.id)
        .order_by("-created_at", "-id")
        .offset(1)
        .limit(3)
        .values_list("role", "content")
    )
    lean = await history_page(session.id, 3, 1)
    assert [(str(role), content) for role, content in orm] == lean
    assert [content[0]["text"] for _, content in lean] == ["m3 é", "m2 é", "m1 é"]
    assert await history_page(session.id, 64, 5) == []


async def test_reads_build_no_query(client, settings) -> None:
    """The point of the module: no pypika query is built per call (that cost ~300 µs)."""
    owner = await create_account(settings, password=False)
    assistant = await Assistant.create(owner_id=owner.id, name="a")
    session = await ChatSession.create(assistant_id=assistant.id, user_id=owner.id)
    with mock.patch.object(QuerySet, "_make_query", side_effect=AssertionError("built")):
        assert (await user_by_id(owner.id)).id == owner.id
        assert (await owned_session(session.id, owner.id)).assistant.id == assistant.id
        assert await history_page(session.id, 64, 0) == []
        assert await live_api_key("x" * 64) is None


async def test_live_api_key_is_select_related_and_skips_revoked(client, settings) -> None:
    owner = await create_account(settings, password=False)
    key = await ApiKey.create(
        id=new_id(), user_id=owner.id, name="k", prefix="sk-ab", key_hash="h" * 64
    )
    revoked = await ApiKey.create(
        id=new_id(),
        user_id=owner.id,
        name="old",
        prefix="sk-cd",
        key_hash="r" * 64,
        revoked_at=datetime.now(UTC),
    )
    lean = await live_api_key(key.key_hash)
    orm = await ApiKey.get(id=key.id).select_related("user")
    assert fields_of(lean) == fields_of(orm)
    assert fields_of(lean.user) == fields_of(orm.user)
    assert await live_api_key(revoked.key_hash) is None
    assert await live_api_key("x" * 64) is None


async def test_owned_task_is_the_orm_row_and_refuses_others(client, settings) -> None:
    owner = await create_account(settings, password=False)
    other = await create_account(settings, password=False)
    task = await Task.create(
        user_id=owner.id,
        model="m",
        request={"messages": [{"role": "user", "content": "é"}], "prompt_tokens": 3},
        error_code="x",
    )
    lean, orm = await owned_task(task.id, owner.id), await Task.get(id=task.id)
    assert fields_of(lean) == fields_of(orm)
    assert lean.state is orm.state and lean.request["messages"][0]["content"] == "é"
    assert await owned_task(task.id, other.id) is None
