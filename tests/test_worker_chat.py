"""The `generate_answer` job and the reaper, run in-process against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from arq.constants import job_key_prefix
from quart import Quart
from tortoise import timezone
from tortoise.exceptions import IntegrityError

from backend.constants import task_heartbeat_key
from backend.models import ChatSession, CreditReservation, Message, Task, User
from backend.models.credits import ReservationState
from backend.models.tasks import TaskState
from backend.providers.registry import close_registry, configure_registry, get_model
from backend.providers.tokens import count_tokens
from backend.services import task_outcomes, task_recovery, task_settlement, tasks
from backend.services.pricing import price
from backend.services.uploads import save_upload
from backend.settings import Settings
from backend.streams import endings
from backend.streams.task_stream import START, StreamEntry, TaskStream
from schemas.events import EventType
from tests.support.accounts import Account, create_account
from tests.support.fake_openai import FakeOpenAIServer, fake_openai_server
from tests.support.images import image_bytes
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.task_models import BROKEN, CHEAP, DROPPING, SLOW, VISION, with_models
from tests.test_tasks import make_session
from workers.jobs.chat import generate_answer


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    """A fast upstream (20 tokens at once) and a slow one (20 tokens/s)."""
    async with (
        fake_openai_server(tokens=20) as fast,
        fake_openai_server(tokens=400, tokens_per_second=20) as slow,
    ):
        yield fast, slow


@pytest.fixture
async def configured(
    settings: Settings, fakes: tuple[FakeOpenAIServer, FakeOpenAIServer]
) -> AsyncIterator[Settings]:
    fast, slow = fakes
    configured = with_models(settings, fast.base_url, slow.base_url).model_copy(
        update={"task_cancel_poll_seconds": 0.05, "task_heartbeat_ttl_seconds": 2}
    )
    configure_registry(configured)
    yield configured
    await close_registry()
    configure_registry(settings)


@pytest.fixture
def ctx(app: Quart, configured: Settings) -> dict[str, Any]:
    return {"redis": app.config["REDIS"], "settings": configured}


@pytest.fixture
async def account(settings: Settings) -> Account:
    return await create_account(settings, credits=100, password=False)


async def start(ctx: dict[str, Any], account: Account, model: str, question: str = "Hi") -> Task:
    session: ChatSession = await make_session(account, model)
    user = await User.get(id=account.id)
    return await tasks.create_task(
        user,
        session.id,
        [{"type": "text", "text": question}],
        redis=ctx["redis"],
        settings=ctx["settings"],
    )


async def events_of(ctx: dict[str, Any], task_id: str) -> list[StreamEntry]:
    return await TaskStream.for_task(ctx["redis"], ctx["settings"], task_id).read_after()


async def test_answer_is_streamed_stored_and_settled(ctx: dict[str, Any], account: Account) -> None:
    task = await start(ctx, account, CHEAP)
    held = 100 - await balance_of(account.id)
    assert await generate_answer(ctx, task.id) == "succeeded"

    entries = await events_of(ctx, task.id)
    kinds = [e.type for e in entries]
    assert kinds[-2:] == [EventType.USAGE, EventType.DONE]
    assert set(kinds[:-2]) == {EventType.TOKEN}
    text = "".join(e.payload()["delta"] for e in entries[:-2])
    assert text == "".join(f"tok{i} " for i in range(20))
    assert len(entries) - 2 < 20, "deltas arriving together were not coalesced"

    done = entries[-1].payload()
    task = await Task.get(id=task.id)
    assert task.state == TaskState.SUCCEEDED
    assert task.started_at is not None and task.finished_at is not None
    assert done["message_id"] == task.message_id
    message = await Message.get(id=task.message_id)
    assert message.role == "assistant" and message.task_id == task.id
    assert message.content == [{"type": "text", "text": text}]
    assert (task.prompt_tokens, task.completion_tokens) == (
        done["prompt_tokens"],
        done["completion_tokens"],
    )
    assert done["completion_tokens"] == 20
    expected = price(get_model(CHEAP), task.prompt_tokens, task.completion_tokens)
    assert done["cost"] == task.cost == expected
    assert 0 < expected < held
    assert await balance_of(account.id) == 100 - expected
    await assert_ledger_balanced()


async def test_a_failed_settlement_leaves_the_task_running_and_its_hold_intact(
    ctx: dict[str, Any], account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = await start(ctx, account, CHEAP)
    held = 100 - await balance_of(account.id)
    # The answer's message, the transaction's last INSERT, fails in the database: its id
    # is taken (by the user's message), after the transition, the settle and the refund.
    monkeypatch.setattr(task_settlement, "new_id", lambda: task.user_message_id)
    with pytest.raises(IntegrityError):
        await generate_answer(ctx, task.id)
    monkeypatch.undo()

    # Transition, answer and settlement are one transaction: none of them happened, so
    # the reaper can still end the task and release the hold, exactly once.
    task = await Task.get(id=task.id)
    assert task.state == TaskState.RUNNING and task.message_id is None
    assert await Message.filter(task_id=task.id, role="assistant").count() == 0
    reservation = await CreditReservation.get(id=task.reservation_id)
    assert reservation.state == ReservationState.RESERVED
    assert await balance_of(account.id) == 100 - held
    assert await task_outcomes.fail(
        task, "x", "x", expected=TaskState.RUNNING, redis=ctx["redis"], settings=ctx["settings"]
    )
    assert await balance_of(account.id) == 100
    await assert_ledger_balanced()


async def test_a_second_delivery_of_the_job_does_nothing(
    ctx: dict[str, Any], account: Account
) -> None:
    task = await start(ctx, account, CHEAP)
    assert await generate_answer(ctx, task.id) == "succeeded"
    before = await events_of(ctx, task.id)
    balance = await balance_of(account.id)
    assert await generate_answer(ctx, task.id) == "skipped: task is not queued"
    assert await events_of(ctx, task.id) == before
    assert await balance_of(account.id) == balance
    assert await Message.filter(task_id=task.id, role="assistant").count() == 1


async def test_provider_error_fails_the_task_and_releases_credits(
    ctx: dict[str, Any], account: Account
) -> None:
    task = await start(ctx, account, BROKEN)
    assert await balance_of(account.id) < 100
    assert await generate_answer(ctx, task.id) == "failed"
    entries = await events_of(ctx, task.id)
    assert [e.type for e in entries] == [EventType.ERROR]
    error = entries[0].payload()
    assert error["code"].startswith("provider_") and error["message"]
    task = await Task.get(id=task.id)
    assert task.state == TaskState.FAILED and task.error_code == error["code"]
    assert task.message_id is None
    assert await balance_of(account.id) == 100
    await assert_ledger_balanced()


async def test_connection_dropped_mid_stream_ends_in_one_error(
    ctx: dict[str, Any], account: Account
) -> None:
    task = await start(ctx, account, DROPPING)
    assert await generate_answer(ctx, task.id) == "failed"
    entries = await events_of(ctx, task.id)
    assert entries[-1].type is EventType.ERROR
    assert [e.type for e in entries[:-1]] == [EventType.TOKEN] * (len(entries) - 1)
    assert sum(e.terminal for e in entries) == 1
    assert await balance_of(account.id) == 100


async def test_cancel_stops_generation_within_a_second_and_charges_produced_tokens(
    ctx: dict[str, Any], account: Account
) -> None:
    task = await start(ctx, account, SLOW)
    job = asyncio.create_task(generate_answer(ctx, task.id))
    stream = TaskStream.for_task(ctx["redis"], ctx["settings"], task.id)
    seen: list[StreamEntry] = []
    while len(seen) < 3:
        seen += await stream.read_after(seen[-1].id if seen else START, block_ms=1000)
    assert await ctx["redis"].exists(task_heartbeat_key(ctx["settings"].redis_prefix, task.id))

    user = await User.get(id=account.id)
    asked = time.perf_counter()
    await tasks.cancel_task(user, task.id, redis=ctx["redis"], settings=ctx["settings"])
    assert await asyncio.wait_for(job, timeout=1.0) == "cancelled"
    assert time.perf_counter() - asked < 1.0

    entries = await stream.read_after()
    assert entries[-1].type is EventType.CANCELLED
    assert sum(e.terminal for e in entries) == 1
    produced = "".join(e.payload()["delta"] for e in entries if e.type is EventType.TOKEN)
    cancelled = entries[-1].payload()
    task = await Task.get(id=task.id)
    assert task.state == TaskState.CANCELLED
    assert cancelled["completion_tokens"] == task.completion_tokens == count_tokens(produced)
    assert task.completion_tokens < 400
    expected = price(get_model(SLOW), task.prompt_tokens, task.completion_tokens)
    assert cancelled["cost"] == task.cost == expected
    assert await balance_of(account.id) == 100 - expected
    message = await Message.get(id=task.message_id)
    assert message.content == [{"type": "text", "text": produced}]
    assert not await ctx["redis"].exists(task_heartbeat_key(ctx["settings"].redis_prefix, task.id))
    await assert_ledger_balanced()


async def test_reaper_fails_a_running_task_whose_heartbeat_expired_exactly_once(
    ctx: dict[str, Any], account: Account
) -> None:
    # The live processes other modules started share this database and run their own
    # reapers (heartbeat TTL 5 s), which look for heartbeats under their own Redis prefix:
    # a task started 30 s ago was theirs to reap too, and the one that won appended the
    # error to its own prefix's stream, so this test found none. Started just past this
    # test's TTL (1 s), the task is stale only to this test's reapers for 3.5 s more.
    fast = ctx["settings"].model_copy(
        update={"task_heartbeat_ttl_seconds": 1, "task_heartbeat_interval_seconds": 0.1}
    )
    task = await start(ctx, account, CHEAP)
    just_stale = timezone.now() - timedelta(seconds=1.5)
    await Task.filter(id=task.id).update(state=TaskState.RUNNING, started_at=just_stale)
    # A first sighting of the missing heartbeat only marks the task (a Redis outage
    # expires live workers' heartbeats too); the race is among second sightings.
    assert not await task_recovery.reap_if_dead(ctx["redis"], fast, task.id)
    await asyncio.sleep(task_recovery.confirm_seconds(fast))

    results = await asyncio.gather(
        *(task_recovery.reap_if_dead(ctx["redis"], fast, task.id) for _ in range(8)),
        task_recovery.reap_stale_tasks(ctx["redis"], fast),
    )
    # reap_stale_tasks counts every stale task in the database, other tests' too; the
    # single terminal event below is what shows this task was ended exactly once.
    assert sum(results[:-1]) <= 1
    entries = await events_of(ctx, task.id)
    assert [e.type for e in entries] == [EventType.ERROR]
    assert entries[0].payload()["code"] == task_recovery.WORKER_LOST
    task = await Task.get(id=task.id)
    assert task.state == TaskState.FAILED and task.finished_at is not None
    assert await balance_of(account.id) == 100
    assert await generate_answer(ctx, task.id) == "skipped: task is not queued"
    await assert_ledger_balanced()


async def test_an_ender_cancelled_after_the_transition_still_appends_the_terminal_event(
    ctx: dict[str, Any], account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A web reader fails a dead worker's task and its client leaves at that moment: the
    cancellation must not fall between the committed FAILED and the terminal event, or
    no reaper looks at the task again and every later reader waits forever."""
    task = await start(ctx, account, CHEAP)
    await Task.filter(id=task.id).update(state=TaskState.RUNNING, started_at=timezone.now())
    appending = asyncio.Event()
    append = endings.append_ending

    async def slow_append(stream: TaskStream, events: list[Any]) -> str:
        appending.set()
        await asyncio.sleep(0.3)
        return await append(stream, events)

    monkeypatch.setattr(endings, "append_ending", slow_append)
    ender = asyncio.create_task(
        task_outcomes.fail(
            task,
            task_recovery.WORKER_LOST,
            task_recovery.WORKER_LOST_MESSAGE,
            expected=TaskState.RUNNING,
            redis=ctx["redis"],
            settings=ctx["settings"],
        )
    )
    await asyncio.wait_for(appending.wait(), 10)
    ender.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ender
    monkeypatch.undo()
    assert [e.type for e in await events_of(ctx, task.id)] == [EventType.ERROR]
    assert (await Task.get(id=task.id)).state == TaskState.FAILED
    assert await balance_of(account.id) == 100
    await assert_ledger_balanced()


async def test_reaper_spares_tasks_with_a_live_heartbeat_or_just_started(
    ctx: dict[str, Any], account: Account
) -> None:
    alive = await start(ctx, account, CHEAP)
    fresh = await start(ctx, account, CHEAP)
    long_ago = timezone.now() - timedelta(seconds=30)
    await Task.filter(id=alive.id).update(state=TaskState.RUNNING, started_at=long_ago)
    await Task.filter(id=fresh.id).update(state=TaskState.RUNNING, started_at=timezone.now())
    prefix = ctx["settings"].redis_prefix
    await ctx["redis"].set(task_heartbeat_key(prefix, alive.id), "1", ex=5)

    await task_recovery.reap_stale_tasks(ctx["redis"], ctx["settings"])
    assert not await task_recovery.reap_if_dead(ctx["redis"], ctx["settings"], alive.id)
    assert not await task_recovery.reap_if_dead(ctx["redis"], ctx["settings"], fresh.id)
    for task in (alive, fresh):
        assert (await Task.get(id=task.id)).state == TaskState.RUNNING
        assert await events_of(ctx, task.id) == []


async def test_reaper_fails_tasks_queued_too_long_only_when_their_job_is_gone(
    ctx: dict[str, Any], account: Account
) -> None:
    lost = await start(ctx, account, CHEAP)
    waiting = await start(ctx, account, CHEAP)
    old = timezone.now() - timedelta(seconds=ctx["settings"].task_queued_timeout_seconds + 5)
    await Task.filter(id__in=[lost.id, waiting.id]).update(created_at=old)
    await ctx["redis"].delete(job_key_prefix + lost.id)

    await task_recovery.reap_stale_tasks(ctx["redis"], ctx["settings"])
    assert (await Task.get(id=lost.id)).state == TaskState.FAILED
    assert (await Task.get(id=lost.id)).error_code == task_recovery.NEVER_STARTED
    assert (await Task.get(id=waiting.id)).state == TaskState.QUEUED
    assert [e.type for e in await events_of(ctx, lost.id)] == [EventType.ERROR]


async def test_an_uploaded_image_is_stored_by_reference_and_sent_inline(
    ctx: dict[str, Any],
    account: Account,
    settings: Settings,
    fakes: tuple[FakeOpenAIServer, FakeOpenAIServer],
) -> None:
    user = await User.get(id=account.id)
    png = image_bytes()
    upload, _ = await save_upload(user, png, settings)
    session = await make_session(account, VISION)
    parts = [{"type": "text", "text": "What colour?"}, {"type": "image", "upload_id": upload.id}]
    task = await tasks.create_task(
        user, session.id, parts, redis=ctx["redis"], settings=ctx["settings"]
    )
    assert "base64" not in json.dumps(task.request)
    assert await generate_answer(ctx, task.id) == "succeeded"
    fast, _ = fakes
    sent = fast.stats.requests[-1].json()["messages"][-1]["content"]
    encoded = base64.b64encode(png).decode()
    assert sent[1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{encoded}"},
    }
