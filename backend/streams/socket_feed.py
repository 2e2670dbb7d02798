"""A WebSocket connection's subscription to its user's document status feed, beside its
task subscriptions (`backend/http/socket_session.py`).

Events go out as the SSE feed's data with `type` and `id` added. Subscribing again
replaces the subscription (resuming from the new `last_event_id`), so a client that
lost track can simply subscribe again; the old one is stopped first, so nothing is
sent twice by two subscriptions.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing, suppress

from pydantic import BaseModel
from redis.asyncio import Redis

from backend.errors import ApiError
from backend.models import User
from backend.settings import Settings
from backend.streams.feed_delivery import FeedEntry, FeedReader, open_feed_reader
from backend.streams.hub import StreamHub
from schemas.ws import ErrorReply, FeedSubscribedReply, FeedUnsubscribedReply

log = logging.getLogger("sluice.ws")

SendText = Callable[[str], Awaitable[None]]


def feed_message(entry: FeedEntry) -> str:
    """The event's JSON with `type` and `id` first, without re-encoding its data."""
    head = json.dumps({"type": entry.type, "id": entry.id or None})
    if entry.data == "{}":
        return head
    return f"{head[:-1]}, {entry.data[1:]}"


class SocketFeed:
    def __init__(self, send_text: SendText) -> None:
        self.send_text = send_text
        self.pump: asyncio.Task[None] | None = None

    async def reply(self, message: BaseModel) -> None:
        await self.send_text(message.model_dump_json())

    async def subscribe(
        self,
        user: User,
        last_event_id: str | None,
        ref: str | None,
        *,
        redis: Redis,
        hub: StreamHub,
        settings: Settings,
    ) -> None:
        await self.stop()
        reader = await open_feed_reader(
            user, last_event_id, redis=redis, hub=hub, settings=settings
        )
        await self.reply(FeedSubscribedReply(ref=ref))
        self.pump = asyncio.create_task(self.forward(reader))

    async def forward(self, reader: FeedReader) -> None:
        try:
            async with aclosing(reader.events()) as events:
                async for entry in events:
                    if entry is not None:
                        await self.send_text(feed_message(entry))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivering the document feed over websocket failed")
            with suppress(Exception):
                await self.reply(
                    ErrorReply(
                        code=503,
                        message="Feed interrupted; send subscribe_feed again with your "
                        "last event id",
                    )
                )

    async def unsubscribe(self, ref: str | None) -> None:
        if self.pump is None or self.pump.done():
            raise ApiError("Not subscribed to your feed on this connection", status=404)
        await self.stop()
        await self.reply(FeedUnsubscribedReply(ref=ref))

    async def stop(self) -> None:
        pump, self.pump = self.pump, None
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
