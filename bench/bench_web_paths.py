"""The web process's per-answer and per-frame paths (issue 16, fourth pass), old next to
new in one process.

Each path runs the code before and after alternating round by round; the CPU of this
process (`process_time`, aiosqlite's thread included) is divided by the runs. SQL paths
run against the service's own engine (SQLite with BEGIN IMMEDIATE, or `--database-url`);
Redis paths against `--redis-url` (default $REDIS_URL; skipped without one).

Per answer:
- authentication: the deny-list read and the user row by Tortoise's query builder,
  against the same with the row read by fixed SQL (backend/models/lean_reads.py); an
  API key with its user (`select_related`), against fixed SQL;
- a task of the user's (a stream reader's opening, a status poll), against fixed SQL;
- the chat session with its assistant (`select_related`), against fixed SQL;
- the history of a fresh session and of a 40-message one, against fixed SQL;
- a new task's reader opening: its lease, then the lease refresh, then the hub's wake
  and catch-up read (three round trips), against the refresh inside the hub's pipeline;
- a stream's wait for its takeover and revocation channels (subscribed long ago) under
  a timeout scope, against a check of the flag.

Per frame:
- an SSE frame's `send` through the open-connection counter and the body limit's
  wrappers, against the one wrapper doing both;
- the hub's parse of one Redis entry, against the fast path for the usual shape.

Usage: python -m bench.bench_web_paths [--rounds N] [--runs N] [--database-url URL]
       [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from backend.database import close_database, open_database
from backend.http.body_limits import StreamedBody
from backend.http.request_metrics import is_event_stream
from backend.metrics.instruments import OPEN_CONNECTIONS
from backend.models import ApiKey, Assistant, ChatSession, Message, Task, User
from backend.models.chats import Role
from backend.models.ids import new_id
from backend.models.lean_reads import live_api_key, owned_session, owned_task
from backend.providers.base import ChatMessage
from backend.services import context
from backend.services.authentication import authenticate_credential
from backend.services.revocation import login_revoked
from backend.services.tokens import decode_access_claims, issue_access_token
from backend.settings import Settings
from backend.streams.delivery import open_new_task_reader
from backend.streams.hub import StreamHub
from backend.streams.task_stream import StreamEntry, TaskStream, text
from bench.alternation import us_per_call
from bench.service import migrated_database
from schemas.events import EventType, TokenEvent

HISTORY = 40
FRAMES = 1000


async def measure(
    name: str, old: Callable[[], Awaitable], new: Callable[[], Awaitable], rounds: int, runs: int
) -> None:
    old_us, new_us = await us_per_call(old, new, rounds, runs)
    print(f"{name:<52} {old_us:>9.1f} {new_us:>9.1f} µs {new_us / old_us:>7.2f}x")


async def old_recent_history(session: ChatSession, vision: bool, budget: int) -> list:
    """context.recent_history before: the page built by Tortoise on every call."""
    newest_first: list[ChatMessage] = []
    spent, offset = 0, 0
    while spent <= budget:
        page = (
            await Message.filter(session_id=session.id)
            .order_by("-created_at", "-id")
            .offset(offset)
            .limit(context.HISTORY_PAGE)
            .values_list("role", "content")
        )
        for role, content in page:
            message = await context.to_chat_message(str(role), content, vision, session.user_id)
            if not message.content:
                continue
            newest_first.append(message)
            spent += context.message_cost(message)
            if spent > budget:
                break
        if len(page) < context.HISTORY_PAGE:
            break
        offset += context.HISTORY_PAGE
    newest_first.reverse()
    return newest_first


async def run_sql(rounds: int, runs: int, redis: aioredis.Redis | None, settings: Settings) -> None:
    user = await User.create(username=f"bench{new_id()[:8]}", credits=10**9)
    assistant = await Assistant.create(owner_id=user.id, name="bench", llm={})
    fresh = await ChatSession.create(assistant_id=assistant.id, user_id=user.id)
    long = await ChatSession.create(assistant_id=assistant.id, user_id=user.id)
    for index in range(HISTORY):
        role = Role.USER if index % 2 == 0 else Role.ASSISTANT
        text_ = f"Message {index}: " + "a story about a lighthouse keeper and the sea " * 6
        await Message.create(
            session_id=long.id, role=role, content=[{"type": "text", "text": text_}]
        )
    print(f"{'path (per call, CPU of this process)':<52} {'old':>9} {'new':>9}    {'ratio':>7}")
    if redis is not None:
        token = issue_access_token(user, settings)

        async def old_auth() -> None:
            claims = decode_access_claims(token, settings)
            if claims.login_id is not None:
                await login_revoked(redis, settings, claims.login_id)
            await User.get_or_none(id=claims.user_id)

        async def new_auth() -> None:
            await authenticate_credential(token, settings, redis)

        await measure("authentication: deny-list + user row", old_auth, new_auth, rounds, runs)

    api_key = await ApiKey.create(
        id=new_id(), user_id=user.id, name="bench", prefix="sk-b", key_hash=new_id() * 2
    )

    async def old_key() -> None:
        await ApiKey.get_or_none(key_hash=api_key.key_hash, revoked_at=None).select_related("user")

    await measure(
        "an API key with its user", old_key, lambda: live_api_key(api_key.key_hash), rounds, runs
    )

    polled = await Task.create(user_id=user.id, model="m", request={"messages": []})
    await measure(
        "a task of the user's (stream opening, status poll)",
        lambda: Task.get_or_none(id=polled.id, user_id=user.id),
        lambda: owned_task(polled.id, user.id),
        rounds,
        runs,
    )

    async def old_session() -> None:
        await ChatSession.filter(id=fresh.id, user_id=user.id).select_related("assistant").first()

    await measure(
        "session with its assistant",
        old_session,
        lambda: owned_session(fresh.id, user.id),
        rounds,
        runs,
    )
    for label, session in (("fresh session", fresh), (f"{HISTORY} messages", long)):
        await measure(
            f"history, {label}",
            lambda s=session: old_recent_history(s, False, 6000),
            lambda s=session: context.recent_history(s, False, 6000),
            rounds,
            runs,
        )
    if redis is not None:
        await run_opening(rounds, runs, redis, settings, user)


async def run_opening(
    rounds: int, runs: int, redis: aioredis.Redis, settings: Settings, user: User
) -> None:
    """A new task's reader up to its first entry, old and new, then given up."""
    hub = StreamHub(redis, settings.redis_prefix, block_ms=2000)
    await hub.takeovers.subscriber.wait_subscribed(2.0)
    tasks = [await Task.create(user_id=user.id, model="m") for _ in range(2 * rounds * runs)]
    for task in tasks:
        await TaskStream.for_task(redis, settings, task.id).append(TokenEvent(delta="hi"))

    async def old() -> None:
        task = tasks.pop()
        reader = await open_new_task_reader(task, redis=redis, hub=hub, settings=settings)
        await reader.stream.refresh_lease(reader.lease, reader.lease_seconds)
        subscription = await hub.subscribe(reader.stream.key, reader.last_id)
        await subscription.get(1.0)
        hub.unsubscribe(subscription)
        await reader.close()

    async def new() -> None:
        task = tasks.pop()
        reader = await open_new_task_reader(task, redis=redis, hub=hub, settings=settings)
        subscription, _ = await hub.subscribe_led(
            reader.stream.key, reader.last_id, reader.queue_lease_refresh
        )
        await subscription.get(1.0)
        hub.unsubscribe(subscription)
        await reader.close()

    subscriber = hub.takeovers.subscriber

    async def old_wait() -> None:
        subscriber.start()
        async with asyncio.timeout(2.0):
            await subscriber.subscribed.wait()

    try:
        await measure("new task's reader: lease, refresh, subscription", old, new, rounds, runs)
        await measure(
            "a stream's wait for its subscribed channel",
            old_wait,
            lambda: subscriber.wait_subscribed(2.0),
            rounds,
            runs * 10,
        )
    finally:
        await hub.stop()


class OldStreamedBody(StreamedBody):
    async def send(self, message: Any) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self.upstream_send(message)


def old_counting(send: Callable[[dict], Awaitable[None]]) -> Callable[[dict], Awaitable[None]]:
    """ConnectionMetrics' counting_send before: a wrapper of its own around every send."""
    counted: list[str] = []

    async def counting_send(message: dict) -> None:
        if not counted:
            if message["type"] == "websocket.accept":
                counted.append("websocket")
            elif message["type"] == "http.response.start" and is_event_stream(message):
                counted.append("sse")
            if counted:
                OPEN_CONNECTIONS.labels(counted[0]).inc()
        await send(message)

    return counting_send


async def sink(message: dict) -> None:
    return None


START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
}
FRAME = {"type": "http.response.body", "body": b"id: 1-0\nevent: token\ndata: {}\n\n"}


async def run_frames(rounds: int) -> None:
    scope: Any = {"type": "http", "headers": []}

    async def old() -> None:
        body = OldStreamedBody(scope, sink, sink, 1000)
        send = body.send
        outer = old_counting(send)
        await outer(START)
        for _ in range(FRAMES):
            await outer(FRAME)
        OPEN_CONNECTIONS.labels("sse").dec()

    async def new() -> None:
        body = StreamedBody(scope, sink, sink, 1000)
        send = body.send
        await send(START)
        for _ in range(FRAMES):
            await send(FRAME)
        body.finish()

    spent = {"old": 0.0, "new": 0.0}
    for _ in range(rounds * 10):
        for label, work in (("old", old), ("new", new)):
            started = time.process_time()
            await work()
            spent[label] += time.process_time() - started
    old_us, new_us = (spent[k] / (rounds * 10 * FRAMES) * 1e6 for k in ("old", "new"))
    name = "an SSE frame's send through our ASGI wrappers"
    print(f"{name:<52} {old_us:>9.2f} {new_us:>9.2f} µs {new_us / old_us:>7.2f}x")


def old_from_redis(entry_id: bytes | str, fields: dict[Any, Any]) -> StreamEntry:
    values = {text(k): text(v) for k, v in fields.items()}
    return StreamEntry(id=text(entry_id), type=EventType(values["type"]), data=values["data"])


def run_parse(rounds: int) -> None:
    fields = {b"type": b"token", b"data": b'{"delta":" the"}'}
    spent = {"old": 0.0, "new": 0.0}
    for _ in range(rounds * 10):
        for label, parse in (("old", old_from_redis), ("new", StreamEntry.from_redis)):
            started = time.process_time()
            for _ in range(FRAMES):
                parse(b"1700000000000-0", fields).terminal  # noqa: B018
            spent[label] += time.process_time() - started
    old_us, new_us = (spent[k] / (rounds * 10 * FRAMES) * 1e6 for k in ("old", "new"))
    name = "the hub's parse of an entry (and its terminal check)"
    print(f"{name:<52} {old_us:>9.2f} {new_us:>9.2f} µs {new_us / old_us:>7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    args = parser.parse_args()
    with migrated_database(
        args.database_url,
        redis_prefix=f"bench-{new_id()[:8]}",
        secret_key="bench-secret-key-long-enough-for-hs256",
    ) as settings:

        async def go() -> None:
            await open_database(settings)
            redis = aioredis.from_url(args.redis_url) if args.redis_url else None
            try:
                await run_sql(args.rounds, args.runs, redis, settings)
                await run_frames(args.rounds)
                run_parse(args.rounds)
            finally:
                await close_database()
                if redis is not None:
                    keys = [key async for key in redis.scan_iter(f"{settings.redis_prefix}*")]
                    if keys:
                        await redis.delete(*keys)
                    await redis.aclose()

        asyncio.run(go())


if __name__ == "__main__":
    main()
