"""Context assembly: presets first, newest history kept, oldest dropped whole, never too long."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from quart import Quart

from backend.errors import PayloadTooLarge
from backend.models import Assistant, ChatSession, Message, User
from backend.providers.base import Capability, ChatMessage, ModelSpec
from backend.providers.tokens import count_message_tokens
from backend.services.context import (
    build_context,
    message_cost,
    output_tokens,
    prompt_budget,
    recent_history,
)
from backend.services.upload_access import MISSING_IMAGE, inline_uploads
from backend.services.uploads import save_upload, upload_key
from backend.settings import Settings
from backend.storage.configured import upload_storage
from tests.support.chats import create_account
from tests.support.images import image_bytes

START = datetime(2026, 1, 1, tzinfo=UTC)


def spec(window: int = 8192, max_output: int = 256, *, vision: bool = False) -> ModelSpec:
    capabilities = {Capability.TEXT} | ({Capability.VISION} if vision else set())
    return ModelSpec(
        id="tiny",
        provider="openai",
        upstream="tiny",
        context_window=window,
        max_output=max_output,
        capabilities=frozenset(capabilities),
    )


@pytest.fixture
async def user(app: Quart, settings: Settings) -> User:
    account = await create_account(settings)
    return await User.get(id=account.id)


async def make_assistant(user: User, **fields) -> Assistant:
    values = {
        "llm": {"max_tokens": 64},
        "prompt": {"prompt": "You are terse. {knowledge}"},
        "preset_messages": [],
        **fields,
    }
    return await Assistant.create(owner_id=user.id, name="a", **values)


async def make_session(user: User, assistant: Assistant, turns: list[tuple[str, str]], **extra):
    session = await ChatSession.create(assistant_id=assistant.id, user_id=user.id)
    for index, (role, text) in enumerate(turns):
        await Message.create(
            session_id=session.id,
            role=role,
            content=[{"type": "text", "text": text}],
            created_at=START + timedelta(seconds=index),
            **extra,
        )
    return session


def texts(messages: list[ChatMessage]) -> list[tuple[str, str | list]]:
    return [(m.role, m.content) for m in messages]


async def test_order_presets_history_and_new_message(user: User) -> None:
    assistant = await make_assistant(
        user,
        preset_messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Bonjour"},
        ],
    )
    session = await make_session(user, assistant, [("assistant", "Welcome"), ("user", "q1")])
    context = await build_context(
        session, assistant, spec(), new_parts=[{"type": "text", "text": "q2"}]
    )
    assert texts(context) == [
        ("system", "You are terse.\n\nAnswer in French."),
        ("user", "Hi"),
        ("assistant", "Bonjour"),
        ("assistant", "Welcome"),
        ("user", "q1"),
        ("user", "q2"),
    ]


async def test_without_new_parts_the_newest_stored_message_is_answered(user: User) -> None:
    assistant = await make_assistant(user, prompt={"prompt": ""})
    session = await make_session(user, assistant, [("user", "first"), ("user", "second")])
    context = await build_context(session, assistant, spec())
    assert texts(context) == [("user", "first"), ("user", "second")]


async def test_invisible_messages_reach_the_model(user: User) -> None:
    assistant = await make_assistant(user)
    session = await make_session(user, assistant, [("system", "User is vegan")], visible=False)
    context = await build_context(
        session, assistant, spec(), new_parts=[{"type": "text", "text": "Dinner idea?"}]
    )
    assert ("system", "User is vegan") in texts(context)


async def test_small_window_keeps_the_newest_history_that_fits(user: User) -> None:
    assistant = await make_assistant(user, llm={"max_tokens": 64})
    turns = [
        ("user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * 30) for i in range(12)
    ]
    session = await make_session(user, assistant, turns)
    model = spec(window=400, max_output=128)
    new = [{"type": "text", "text": "the newest question"}]
    context = await build_context(session, assistant, model, new_parts=new)

    budget = prompt_budget(model, output_tokens(assistant.llm, model))
    assert budget == 400 - 64 - (16 + 4)
    assert count_message_tokens(context) <= budget
    assert context[0].role == "system"
    assert context[-1].content == "the newest question"
    kept = [m.content for m in context[1:-1]]
    assert 0 < len(kept) < len(turns)
    assert kept == [text for _, text in turns[-len(kept) :]]
    dropped = turns[-len(kept) - 1]
    with_one_more = [context[0], ChatMessage(*dropped), *context[1:]]
    assert count_message_tokens(with_one_more) > budget


async def test_a_long_session_reads_only_the_history_that_can_fit(user: User) -> None:
    assistant = await make_assistant(user, llm={"max_tokens": 64})
    session = await ChatSession.create(assistant_id=assistant.id, user_id=user.id)
    turns = [f"turn {i} " + "word " * 8 for i in range(300)]
    await Message.bulk_create(
        [
            Message(
                session_id=session.id,
                role="user" if i % 2 == 0 else "assistant",
                content=[{"type": "text", "text": text}],
                created_at=START + timedelta(seconds=i),
            )
            for i, text in enumerate(turns)
        ]
    )
    model = spec(window=600, max_output=64)
    budget = prompt_budget(model, 64)

    read = await recent_history(session, False, budget)
    # The newest messages up to the budget and one past it: not the 300 of the session.
    assert [m.content for m in read] == turns[-len(read) :]
    costs = [message_cost(m) for m in read]
    assert sum(costs[1:]) <= budget < sum(costs)

    context = await build_context(
        session, assistant, model, new_parts=[{"type": "text", "text": "q"}]
    )
    kept = [m.content for m in context[1:-1]]
    assert 0 < len(kept) < len(read)
    assert kept == turns[-len(kept) :]


async def test_an_old_long_message_is_dropped_whole_and_stops_the_history(user: User) -> None:
    assistant = await make_assistant(user, prompt={"prompt": ""}, llm={"max_tokens": 32})
    turns = [("user", "short old"), ("assistant", "long " * 500), ("user", "recent")]
    session = await make_session(user, assistant, turns)
    context = await build_context(
        session,
        assistant,
        spec(window=300, max_output=32),
        new_parts=[{"type": "text", "text": "q"}],
    )
    assert texts(context) == [("user", "recent"), ("user", "q")]


async def test_the_answer_reservation_follows_the_assistant_max_tokens(user: User) -> None:
    model = spec(window=1000, max_output=500)
    assert output_tokens({"max_tokens": 100}, model) == 100
    assert output_tokens({"max_tokens": 5000}, model) == 500
    assert output_tokens({}, model) == 500


async def test_a_message_that_cannot_fit_is_413(user: User) -> None:
    assistant = await make_assistant(user, llm={"max_tokens": 64})
    session = await make_session(user, assistant, [("user", "earlier")])
    huge = [{"type": "text", "text": "word " * 2000}]
    with pytest.raises(PayloadTooLarge) as raised:
        await build_context(session, assistant, spec(window=512, max_output=64), new_parts=huge)
    assert raised.value.status == 413
    assert "Shorten the message" in raised.value.message


async def test_images_become_image_parts_only_for_vision_models(
    user: User, settings: Settings
) -> None:
    png = image_bytes()
    upload, _ = await save_upload(user, png, settings)
    assistant = await make_assistant(user, prompt={"prompt": ""})
    session = await ChatSession.create(assistant_id=assistant.id, user_id=user.id)
    parts = [
        {"type": "text", "text": "What colour?"},
        {"type": "image", "upload_id": upload.id},
        {"type": "image", "url": "https://example.com/x.png"},
    ]
    vision = await build_context(session, assistant, spec(vision=True), new_parts=parts)
    # The upload goes in by reference, so the task row stays small ...
    assert vision[-1].content == [
        {"type": "text", "text": "What colour?"},
        {"type": "image_url", "image_url": {"url": f"upload:{upload.id}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
    ]
    # ... and is inlined as a data URL when the worker sends the turn.
    encoded = base64.b64encode(png).decode()
    assert await inline_uploads(vision[-1].content, user.id, settings) == [
        {"type": "text", "text": "What colour?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
    ]
    text_only = await build_context(session, assistant, spec(), new_parts=parts)
    assert text_only[-1].content == "What colour?\n[image]\n[image]"


async def test_an_image_deleted_before_the_turn_is_sent_becomes_a_note(
    user: User, settings: Settings
) -> None:
    upload, _ = await save_upload(user, image_bytes(), settings)
    queued = [{"type": "image_url", "image_url": {"url": f"upload:{upload.id}"}}]
    await upload_storage(settings).delete(upload_key(upload))
    assert await inline_uploads(queued, user.id, settings) == [
        {"type": "text", "text": MISSING_IMAGE}
    ]
    await upload.delete()
    assert await inline_uploads(queued, user.id, settings) == [
        {"type": "text", "text": MISSING_IMAGE}
    ]
