"""A streamed answer's reader lease is taken with its job, in the enqueue's one round trip
(issue 16, fifth pass): the SET NX of its own was one more Redis round trip, ~120 µs of
the web's CPU, per streamed answer (bench/bench_request_paths.py)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from quart import Quart

from backend.constants import task_lease_key
from backend.http.socket_session import SocketSession
from backend.http.stream_hub import hub_for
from backend.job_queue import KeyClaim, enqueue
from backend.models import Assistant, ChatSession, Task, User
from backend.services import completions, converse, openai_chat, tasks
from backend.settings import Settings
from backend.streams.delivery import open_new_task_reader
from backend.streams.task_stream import TaskStream
from schemas.chats import CompletionRequest
from schemas.events import DoneEvent
from schemas.openai_chat import ChatCompletionRequest
from schemas.swiftchat import ConverseRequest
from tests.support.accounts import Account, create_account
from tests.support.task_models import CHEAP, test_models  # noqa: F401
from tests.test_answer_round_trips import CountingRedis

pytestmark = pytest.mark.usefixtures("test_models")


async def test_a_claim_is_set_with_a_new_job_only(arq_pool: ArqRedis) -> None:
    queue, key = f"lease-test-{uuid.uuid4().hex[:8]}", f"lease-test:{uuid.uuid4().hex}"
    job_id = uuid.uuid4().hex
    claim = KeyClaim(key, "mine", 5000)
    assert await enqueue(arq_pool, queue, "f", job_id=job_id, claim=claim) is not None
    assert claim.taken
    assert await arq_pool.get(key) == b"mine"
    assert 4000 < await arq_pool.pttl(key) <= 5000
    # The same job again is not enqueued, and claims nothing.
    again = KeyClaim(f"{key}:again", "x", 5000)
    assert await enqueue(arq_pool, queue, "f", job_id=job_id, claim=again) is None
    assert not again.taken and not await arq_pool.exists(again.key)
    # A held key is left as it is; the job is enqueued all the same.
    held = KeyClaim(key, "theirs", 5000)
    assert await enqueue(arq_pool, queue, "f", job_id=uuid.uuid4().hex, claim=held) is not None
    assert not held.taken
    assert await arq_pool.get(key) == b"mine"
    await arq_pool.delete(key, queue, job_key_prefix + job_id)


async def account_with_session(settings: Settings) -> tuple[Account, ChatSession]:
    """A user with credits and a chat session of theirs on the cheap model."""
    account = await create_account(settings, credits=100, password=False)
    assistant = await Assistant.create(owner_id=account.id, name="a", llm={"model_name": CHEAP})
    return account, await ChatSession.create(assistant_id=assistant.id, user_id=account.id)


async def test_a_streamed_turn_takes_its_reader_lease_in_the_enqueue_round_trip(
    app: Quart, settings: Settings
) -> None:
    account, session = await account_with_session(settings)
    redis = app.config["REDIS"]
    counting = CountingRedis(redis)
    lease = tasks.ReaderLease(settings.stream_lease_seconds)
    user = await User.get(id=account.id)
    task = await tasks.create_task(
        user,
        session.id,
        [{"type": "text", "text": "Hi?"}],
        redis=counting,  # type: ignore[arg-type]
        settings=settings,
        reader_lease=lease,
    )
    reader = await open_new_task_reader(
        task,
        redis=counting,  # type: ignore[arg-type]
        hub=hub_for(app),
        settings=settings,
        lease=lease.token,
    )
    # The job, its wake and the lease: one script, and no SET of the reader's own.
    assert counting.calls == ["eval"]
    assert lease.token and reader.lease == lease.token
    key = task_lease_key(settings.redis_prefix, task.id)
    assert await redis.get(key) == lease.token.encode()
    assert 0 < await redis.pttl(key) <= settings.stream_lease_seconds * 1000
    assert await redis.exists(job_key_prefix + task.id)
    # The lease is the reader's own: it refreshes it, and gives it up on close.
    assert await reader.stream.refresh_lease(reader.lease, 5)
    await reader.close()
    assert not await redis.exists(key)


async def test_without_a_taken_lease_the_reader_takes_it_itself(
    app: Quart, settings: Settings
) -> None:
    account, session = await account_with_session(settings)
    redis = app.config["REDIS"]
    user = await User.get(id=account.id)
    task = await tasks.create_task(
        user, session.id, [{"type": "text", "text": "Hi?"}], redis=redis, settings=settings
    )
    key = task_lease_key(settings.redis_prefix, task.id)
    assert not await redis.exists(key)
    reader = await open_new_task_reader(task, redis=redis, hub=hub_for(app), settings=settings)
    assert await redis.get(key) == reader.lease.encode()
    await reader.close()


async def test_every_facade_that_reads_its_answer_takes_the_lease_with_the_job(
    app: Quart, settings: Settings
) -> None:
    """OpenAI's chat completions, SwiftChat's converse and RAGFlow's completions (HTTP and
    WebSocket) read every answer they start: each takes the reader's lease in the job's
    script."""
    account = await create_account(settings, credits=100, password=False)
    user = await User.get(id=account.id)
    assistant = await Assistant.create(owner_id=account.id, name="a", llm={"model_name": CHEAP})
    redis = app.config["REDIS"]

    async def openai(lease: tasks.ReaderLease) -> Task:
        body = ChatCompletionRequest(model=CHEAP, messages=[{"role": "user", "content": "Hi?"}])
        task, _ = await openai_chat.start(
            user, body, None, redis=redis, settings=settings, reader_lease=lease
        )
        return task

    async def swiftchat(lease: tasks.ReaderLease) -> Task:
        body = ConverseRequest(messages=[{"role": "user", "content": [{"text": "Hi?"}]}])
        return await converse.start_converse(
            user, body, redis=redis, settings=settings, reader_lease=lease
        )

    async def ragflow(lease: tasks.ReaderLease) -> Task:
        body = CompletionRequest(question="Hi?")
        _, task = await completions.ask(
            user, assistant.id, body, redis=redis, settings=settings, reader_lease=lease
        )
        return task

    for start in (openai, swiftchat, ragflow):
        lease = tasks.ReaderLease(settings.stream_lease_seconds)
        task = await start(lease)
        assert lease.token, start.__name__
        key = task_lease_key(settings.redis_prefix, task.id)
        assert await redis.get(key) == lease.token.encode(), start.__name__


async def test_a_websocket_send_opens_the_new_task_s_reader_without_a_resume_s_checks(
    app: Quart, settings: Settings
) -> None:
    """`send` over the WebSocket went through a resume's reader opening (the task's row,
    consumed, last entry, then a SET NX of the lease): for a task it just created, the
    enqueue's script is the one round trip; the events are delivered all the same."""
    account, chat = await account_with_session(settings)
    redis = app.config["REDIS"]
    counting = CountingRedis(redis)
    sent: list[dict] = []
    delivered = asyncio.Event()

    async def send_text(text: str) -> None:
        sent.append(json.loads(text))
        if sent[-1]["type"] == "done":
            delivered.set()

    session = SocketSession(
        await User.get(id=account.id),
        send_text,
        redis=counting,  # type: ignore[arg-type]
        hub=hub_for(app),
        settings=settings,
    )
    await session.handle(json.dumps({"type": "send", "session_id": chat.id, "content": "Hi?"}))
    assert [m["type"] for m in sent] == ["subscribed"], sent
    assert counting.calls == ["eval"]
    task_id = sent[0]["task_id"]
    pump = session.subscriptions[task_id]
    lease = await redis.get(task_lease_key(settings.redis_prefix, task_id))
    assert lease is not None
    done = DoneEvent(message_id=None, prompt_tokens=1, completion_tokens=1, cost=0)
    await TaskStream.for_task(redis, settings, task_id).append(done)
    await asyncio.wait_for(delivered.wait(), 5)
    assert sent[-1]["task_id"] == task_id
    await asyncio.wait_for(pump, 5)  # it ends once the stream is consumed
    assert await TaskStream.for_task(redis, settings, task_id).is_consumed()
    await session.close()
