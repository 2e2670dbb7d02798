"""An answer's fixed-cost paths (issue 16, second pass), old next to new in one process.

On a VM shared with other work the end-to-end bench (bench/bench_streaming.py) moves by
more than these changes: its processes get a fraction of a core, and CPU per answer
grows with the time each answer lives. Here each path runs against the service's own
database engine (SQLite with BEGIN IMMEDIATE, or `--database-url`), the code before
and after alternating round by round, and the CPU of this process (`process_time`,
aiosqlite's thread included) is divided by the runs:

- worker claim: UPDATE then SELECT of the task, against one UPDATE … RETURNING;
- worker settle: the ending's transaction (task transition, reservation settled with a
  refund, assistant message), the reservation and balance read before/after writing,
  against UPDATE … RETURNING;
- web hold of a free model: a balance SELECT, against none;
- web context: a 40-message session's history as Message instances, each message
  tokenized three times (choose, fit, price), against (role, content) pairs and
  remembered counts;
- auth: a JWT verified on every request, against once per token;
- web creation and worker settle (fourth pass): each transaction through the ORM
  (`tests/support/orm_answer_writes.py`, the code before), against one trip to the
  database each (`backend.models.answer_writes`).

Third pass (Redis round trips of an answer's ending; with `--redis-url`, default
$REDIS_URL, skipped without one):

- worker settle's heartbeat: kept before the settling transaction and dropped after it
  (a SET and a DEL), against kept only when the settle is slow (a timer, cancelled);
- web terminal delivery: the stream marked consumed, then the lease released (a SET
  and an EVAL), against one EVAL doing both.

Usage: python -m bench.bench_answer_paths [--rounds N] [--runs N] [--database-url URL]
       [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import jwt
import redis.asyncio as aioredis
from tortoise import timezone
from tortoise.expressions import F

from backend.database import close_database, open_database
from backend.models import (
    Assistant,
    ChatSession,
    CreditReservation,
    Message,
    Task,
    User,
    answer_writes,
)
from backend.models.answer_writes import NewTask, Settlement
from backend.models.chats import Role
from backend.models.credits import ReservationState
from backend.models.ids import new_id
from backend.models.tasks import TaskState
from backend.providers import tokens
from backend.providers.base import ChatMessage
from backend.services import context, credits
from backend.services.settle_retry import (
    drop_heartbeat,
    keep_heartbeat,
    settle_through_outage,
)
from backend.services.tokens import ALGORITHM, decode_access_claims, issue_access_token
from backend.settings import Settings
from backend.signing_key import signing_key
from backend.streams.task_stream import TaskStream
from bench.service import migrated_database
from tests.support.orm_answer_writes import orm_record, orm_settle
from workers.jobs.chat import claim

HISTORY = 40


async def old_claim(task_id: str) -> Task | None:
    claimed = await Task.filter(id=task_id, state=TaskState.QUEUED).update(
        state=TaskState.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
    )
    return await Task.get(id=task_id) if claimed else None


async def old_post_entry(user_id: int, delta: int) -> int | None:
    balances = User.filter(id=user_id)
    if delta < 0:
        balances = balances.filter(credits__gte=-delta)
    if delta and not await balances.update(credits=F("credits") + delta):
        return None
    return await User.filter(id=user_id).first().values_list("credits", flat=True)


async def old_close(reservation_id: str, wanted: int) -> int:
    reservation = await CreditReservation.get(id=reservation_id)
    charged = min(wanted, reservation.amount)
    await CreditReservation.filter(id=reservation_id, state=ReservationState.RESERVED).update(
        state=ReservationState.SETTLED, charged=charged, finished_at=timezone.now()
    )
    await old_post_entry(reservation.user_id, reservation.amount - charged)
    return charged


async def settle_with(close: Callable[[str, int], Awaitable[int]], user: User, session_id: str):
    """One task ended: its transition, the settle (with a refund) and the message."""
    reservation_id = await credits.atomically(lambda: credits.hold(user.id, 5))
    task = await Task.create(
        user_id=user.id, model="m", state=TaskState.RUNNING, reservation_id=reservation_id
    )

    async def run() -> None:
        await Task.filter(id=task.id, state=TaskState.RUNNING).update(
            state=TaskState.SUCCEEDED, finished_at=timezone.now(), cost=2
        )
        await close(reservation_id, 2)
        await Message.create(
            session_id=session_id, role=Role.ASSISTANT, content=[{"type": "text", "text": "hi"}]
        )

    started = time.process_time()
    await credits.atomically(run)
    return time.process_time() - started


async def old_history(session: ChatSession) -> list[ChatMessage]:
    """recent_history before: Message instances, each message tokenized when chosen, again
    in `fit` and again when the prompt is priced (no counts remembered)."""
    page = await Message.filter(session_id=session.id).order_by("-created_at", "-id").limit(64)
    history = []
    for stored in page:
        message = await context.to_chat_message(
            str(stored.role), stored.content, False, session.user_id
        )
        tokens.encode_count(str(message.content))
        history.append(message)
    for _ in range(2):
        for message in history:
            tokens.encode_count(str(message.content))
    return history


async def new_history(session: ChatSession) -> list[ChatMessage]:
    messages = await context.recent_history(session, False, 6000)
    for _ in range(2):
        for message in messages:
            tokens.count_tokens(str(message.content))
    return messages


async def measure(
    name: str, old: Callable[[], Awaitable], new: Callable[[], Awaitable], rounds: int, runs: int
) -> None:
    spent = {"old": 0.0, "new": 0.0}
    waited = {"old": 0.0, "new": 0.0}
    for _ in range(rounds):
        for label, work in (("old", old), ("new", new)):
            started, began = time.process_time(), time.perf_counter()
            for _ in range(runs):
                await work()
            spent[label] += time.process_time() - started
            waited[label] += time.perf_counter() - began
    old_us, new_us = (spent[k] / (rounds * runs) * 1e6 for k in ("old", "new"))
    old_wall, new_wall = (waited[k] / (rounds * runs) * 1e6 for k in ("old", "new"))
    print(
        f"{name:<46} {old_us:>9.0f} {new_us:>9.0f} µs {new_us / old_us:>7.2f}x"
        f"   wall {old_wall:>6.0f} {new_wall:>6.0f} µs {new_wall / old_wall:>5.2f}x"
    )


async def run(rounds: int, runs: int) -> None:
    user = await User.create(username=f"bench{new_id()[:8]}", credits=10**9)
    assistant = await Assistant.create(owner_id=user.id, name="bench", llm={})
    assistant_session = await ChatSession.create(
        assistant_id=assistant.id, user_id=user.id, name="s"
    )
    # The settles' messages go elsewhere: the context path reads a fixed history.
    settle_session = await ChatSession.create(assistant_id=assistant.id, user_id=user.id)
    for index in range(HISTORY):
        role = Role.USER if index % 2 == 0 else Role.ASSISTANT
        text = f"Message {index}: " + "a story about a lighthouse keeper and the sea " * 6
        await Message.create(
            session_id=assistant_session.id, role=role, content=[{"type": "text", "text": text}]
        )
    settings = Settings(secret_key="bench-secret-key-long-enough-for-hs256", _env_file=None)
    token = issue_access_token(user, settings)
    key = signing_key(settings)

    async def queued() -> str:
        return (await Task.create(user_id=user.id, model="m")).id

    claims = [await queued() for _ in range(rounds * runs * 2)]
    print(f"{'path (per call, CPU of this process)':<46} {'old':>9} {'new':>9}    {'ratio':>7}")
    await measure(
        "worker claim (UPDATE + SELECT → RETURNING)",
        lambda: old_claim(claims.pop()),
        lambda: claim(claims.pop()),
        rounds,
        runs,
    )
    await measure(
        "worker settle transaction (with a refund)",
        lambda: settle_with(old_close, user, settle_session.id),
        lambda: settle_with(
            lambda rid, wanted: credits.close_reservation(rid, ReservationState.SETTLED, wanted),
            user,
            settle_session.id,
        ),
        rounds,
        runs,
    )
    await measure(
        "web hold of a free model (in a transaction)",
        lambda: credits.atomically(lambda: old_hold_free(user.id)),
        lambda: credits.atomically(lambda: credits.hold(user.id, 0)),
        rounds,
        runs,
    )
    await measure_answer_writes(user, settle_session.id, rounds, runs)
    await measure(
        f"web context, {HISTORY} history messages",
        lambda: old_history(assistant_session),
        lambda: new_history(assistant_session),
        rounds,
        runs,
    )

    async def old_auth() -> None:
        jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})

    async def new_auth() -> None:
        decode_access_claims(token, settings)

    await measure("auth: the access token's check", old_auth, new_auth, rounds, runs * 10)


async def run_redis(redis_url: str, rounds: int, runs: int) -> None:
    """The ending's Redis round trips, old next to new, on a throwaway key prefix."""
    redis = aioredis.from_url(redis_url)
    prefix = f"bench-{new_id()[:8]}"
    settings = Settings(redis_prefix=prefix, secret_key="x" * 32, _env_file=None)

    async def settled() -> str:
        return "settled"

    async def old_settle() -> None:
        task_id = new_id()
        await keep_heartbeat(redis, settings, task_id)
        await settled()
        await drop_heartbeat(redis, settings, task_id)

    async def new_settle() -> None:
        await settle_through_outage(
            settled, redis=redis, settings=settings, task_id=new_id(), retry_seconds=30
        )

    async def leased() -> tuple[TaskStream, str]:
        stream = TaskStream(redis, prefix, new_id(), retention_seconds=60)
        return stream, await stream.acquire_lease(30) or ""

    leases: dict[str, list[tuple[TaskStream, str]]] = {"old": [], "new": []}
    for label in leases:
        leases[label] = [await leased() for _ in range(rounds * runs)]

    async def old_consume() -> None:
        stream, token = leases["old"].pop()
        await stream.mark_consumed()
        await stream.release_lease(token)

    async def new_consume() -> None:
        stream, token = leases["new"].pop()
        await stream.consume_and_release(token)

    try:
        await measure(
            "worker settle's heartbeat (quick settle)", old_settle, new_settle, rounds, runs
        )
        await measure(
            "web terminal delivery: consumed + lease", old_consume, new_consume, rounds, runs
        )
    finally:
        keys = [key async for key in redis.scan_iter(f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


def new_task(user: User, session_id: str | None, hold: int) -> NewTask:
    """An answer as `tasks.start` records it (a 6-message prompt stored on the task)."""
    prompt = [{"role": "user", "content": "a question about lighthouses " * 8}] * 6
    return NewTask(
        task_id=new_id(),
        user_id=user.id,
        session_id=session_id,
        model="m",
        request={"messages": prompt, "params": {"max_tokens": 512}, "prompt_tokens": 300},
        hold=hold,
        reservation_id=new_id(),
        message_id=new_id() if session_id else None,
        content=[{"type": "text", "text": "a question about lighthouses " * 8}],
    )


def new_ending(task: NewTask) -> Settlement:
    """A successful ending of `task` as the worker settles it: a 60-token answer, 90
    credits of its hold charged, the rest refunded."""
    return Settlement(
        task_id=task.task_id,
        state=TaskState.SUCCEEDED,
        expected=TaskState.RUNNING,
        reservation_id=task.reservation_id,
        cost=90,
        prompt_tokens=300,
        completion_tokens=60,
        message_id=new_id(),
        session_id=task.session_id,
        content=[{"type": "text", "text": "an answer of sixty tokens " * 10}],
        reference=None,
    )


async def measure_answer_writes(user: User, session_id: str, rounds: int, runs: int) -> None:
    """Issue 16, fourth pass: the creation and the settle through the ORM (statement by
    statement, in `credits.atomically`) against one trip each (`answer_writes`)."""
    await measure(
        "web creation transaction (hold, message, task)",
        lambda: orm_record(new_task(user, session_id, 700)),
        lambda: answer_writes.record(new_task(user, session_id, 700)),
        rounds,
        runs,
    )
    endings: dict[str, list[Settlement]] = {"old": [], "new": []}
    for label in endings:
        for _ in range(rounds * runs):
            task = new_task(user, session_id, 700)
            await answer_writes.record(task)
            await Task.filter(id=task.task_id).update(state=TaskState.RUNNING)
            endings[label].append(new_ending(task))
    await measure(
        "worker settle transaction (refund, message)",
        lambda: orm_settle(endings["old"].pop()),
        lambda: answer_writes.settle(endings["new"].pop()),
        rounds,
        runs,
    )


async def old_hold_free(user_id: int) -> str:
    await old_post_entry(user_id, 0)
    reservation = await CreditReservation.create(
        id=new_id(), user_id=user_id, amount=0, task_id=None
    )
    return reservation.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    args = parser.parse_args()
    with migrated_database(args.database_url) as settings:

        async def go() -> None:
            await open_database(settings)
            try:
                await run(args.rounds, args.runs)
                if args.redis_url:
                    await run_redis(args.redis_url, args.rounds, args.runs)
            finally:
                await close_database()

        asyncio.run(go())


if __name__ == "__main__":
    main()
