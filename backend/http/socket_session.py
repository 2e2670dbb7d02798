"""One authenticated WebSocket connection: several task subscriptions over one socket.

Each subscription is its own asyncio task reading through the same delivery rules as
SSE (`open_task_reader`); all writes go through one lock so frames never interleave.
A bad message gets an `error` reply and the connection carries on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing, suppress
from typing import Any

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from backend.dependency_failures import dependency_failure
from backend.errors import ApiError
from backend.http.error_handlers import describe_validation_error
from backend.http.json_bodies import decode_json
from backend.models import User
from backend.services import tasks
from backend.settings import Settings
from backend.streams.delivery import TaskReader, open_new_task_reader, open_task_reader
from backend.streams.hub import StreamHub
from backend.streams.socket_feed import SocketFeed
from backend.streams.task_stream import StreamEntry
from schemas.ws import (
    REF_MAX_LENGTH,
    AuthMessage,
    CancellingReply,
    CancelMessage,
    ClientMessage,
    ErrorReply,
    PingMessage,
    PongReply,
    SendMessage,
    SubscribedReply,
    SubscribeFeedMessage,
    SubscribeMessage,
    UnsubscribedReply,
    UnsubscribeFeedMessage,
    UnsubscribeMessage,
    client_message_adapter,
)

log = logging.getLogger("sluice.ws")

SendText = Callable[[str], Awaitable[None]]


def event_message(entry: StreamEntry, task_id: str) -> str:
    """The event's JSON with `type`, `id` and `task_id` first, without re-encoding its data."""
    head = json.dumps({"type": entry.type.value, "id": entry.id, "task_id": task_id})
    if entry.data == "{}":
        return head
    return f"{head[:-1]}, {entry.data[1:]}"


def parse_message(raw: str | bytes) -> ClientMessage:
    """Raises ApiError(400) with a message saying what is wrong with `raw`."""
    try:
        payload = decode_json(raw)
    except ApiError as error:
        raise ApiError(
            f"Messages must be JSON objects with a 'type': {error.message}", status=error.status
        ) from error
    if not isinstance(payload, dict):
        raise ApiError("Messages must be JSON objects with a 'type'", status=400)
    try:
        return client_message_adapter.validate_python(payload)
    except ValidationError as error:
        raise InvalidMessage(describe_validation_error(error), carried_ref(payload)) from error


class InvalidMessage(ApiError):
    """A JSON object that is not a valid message; `ref` is the one it carried, if valid,
    so the client can still match the `error` reply to what it sent."""

    def __init__(self, message: str, ref: str | None) -> None:
        super().__init__(message, status=400)
        self.ref = ref


def carried_ref(payload: dict[str, Any]) -> str | None:
    ref = payload.get("ref")
    return ref if isinstance(ref, str) and len(ref) <= REF_MAX_LENGTH else None


class SocketSession:
    def __init__(
        self,
        user: User,
        send_text: SendText,
        *,
        redis: Redis,
        hub: StreamHub,
        settings: Settings,
    ) -> None:
        self.user = user
        self.send_text = send_text
        self.redis = redis
        self.hub = hub
        self.settings = settings
        self.write_lock = asyncio.Lock()
        self.subscriptions: dict[str, asyncio.Task[None]] = {}
        # The user's document status feed, multiplexed with the task streams.
        self.feed = SocketFeed(self.send)

    async def send(self, text: str) -> None:
        async with self.write_lock:
            await self.send_text(text)

    async def reply(self, message: BaseModel) -> None:
        await self.send(message.model_dump_json())

    async def handle(self, raw: str | bytes) -> None:
        """Answer one client message; failures become `error` replies."""
        ref = task_id = None
        try:
            message = parse_message(raw)
            ref = message.ref
            task_id = getattr(message, "task_id", None)
            await self.dispatch(message)
        except ApiError as error:
            if isinstance(error, InvalidMessage):
                ref = error.ref
            await self.reply(
                ErrorReply(code=error.status, message=error.message, task_id=task_id, ref=ref)
            )
        except Exception as error:
            failure = dependency_failure(error)
            if failure is not None:  # an outage, as a request would answer it; retry
                message = failure.message
                await self.reply(
                    ErrorReply(code=failure.status, message=message, task_id=task_id, ref=ref)
                )
                return
            log.exception("websocket message failed")
            await self.reply(
                ErrorReply(code=500, message="Internal error; try again", task_id=task_id, ref=ref)
            )

    async def dispatch(self, message: ClientMessage) -> None:
        match message:
            case PingMessage():
                await self.reply(PongReply(ref=message.ref))
            case SubscribeMessage():
                await self.subscribe(message.task_id, message.last_event_id, message.ref)
            case UnsubscribeMessage():
                await self.unsubscribe(message)
            case CancelMessage():
                task = await tasks.cancel_task(
                    self.user, message.task_id, redis=self.redis, settings=self.settings
                )
                await self.reply(
                    CancellingReply(task_id=task.id, status=task.state, ref=message.ref)
                )
            case SendMessage():
                # A new task's reader, its lease taken with the job: none of a resume's
                # checks (the task's row, consumed, last entry) nor their round trips.
                lease = tasks.ReaderLease(self.settings.stream_lease_seconds)
                task = await tasks.create_task(
                    self.user,
                    message.session_id,
                    message.parts(),
                    redis=self.redis,
                    settings=self.settings,
                    reader_lease=lease,
                )
                reader = await open_new_task_reader(
                    task, redis=self.redis, hub=self.hub, settings=self.settings, lease=lease.token
                )
                await self.deliver(reader, message.ref)
            case SubscribeFeedMessage():
                await self.feed.subscribe(
                    self.user,
                    message.last_event_id,
                    message.ref,
                    redis=self.redis,
                    hub=self.hub,
                    settings=self.settings,
                )
            case UnsubscribeFeedMessage():
                await self.feed.unsubscribe(message.ref)
            case AuthMessage():
                raise ApiError("Already authenticated", status=400)

    async def subscribe(self, task_id: str, last_event_id: str | None, ref: str | None) -> None:
        current = self.subscriptions.get(task_id)
        if current is not None:
            # Like a new SSE reader, give a subscription that is just ending a moment to end.
            await asyncio.wait([current], timeout=self.settings.stream_lease_wait_seconds)
            if not current.done():
                raise ApiError(
                    f"Already subscribed to task '{task_id}' on this connection", status=409
                )
        reader = await open_task_reader(
            self.user,
            task_id,
            last_event_id,
            redis=self.redis,
            hub=self.hub,
            settings=self.settings,
        )
        await self.deliver(reader, ref)

    async def deliver(self, reader: TaskReader, ref: str | None) -> None:
        """Confirm the subscription, then pump the reader's events in a task of its own."""
        try:
            await self.reply(SubscribedReply(task_id=reader.task_id, ref=ref))
        except BaseException:
            await reader.close()
            raise
        self.subscriptions[reader.task_id] = asyncio.create_task(self.pump(reader))

    async def pump(self, reader: TaskReader) -> None:
        """Forward one task's events until its terminal event; heartbeats are SSE-only."""
        try:
            async with aclosing(reader.events()) as events:
                async for entry in events:
                    if entry is not None:
                        await self.send(event_message(entry, reader.task_id))
            if reader.superseded:
                await self.reply(
                    ErrorReply(
                        code=409,
                        message="Another connection resumed this task's stream; "
                        "this subscription has ended",
                        task_id=reader.task_id,
                    )
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivering task %s over websocket failed", reader.task_id)
            # The socket itself may be what failed; then there is no one left to tell.
            with suppress(Exception):
                await self.reply(
                    ErrorReply(
                        code=503,
                        message="Stream interrupted; subscribe again with your last event id",
                        task_id=reader.task_id,
                    )
                )
        finally:
            if self.subscriptions.get(reader.task_id) is asyncio.current_task():
                del self.subscriptions[reader.task_id]

    async def unsubscribe(self, message: UnsubscribeMessage) -> None:
        pump = self.subscriptions.pop(message.task_id, None)
        if pump is None:
            raise ApiError(f"Not subscribed to task '{message.task_id}'", status=404)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await self.reply(UnsubscribedReply(task_id=message.task_id, ref=message.ref))

    async def close(self) -> None:
        """Stop every subscription; each releases its lease so the client can resume."""
        pumps = list(self.subscriptions.values())
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await self.feed.stop()
