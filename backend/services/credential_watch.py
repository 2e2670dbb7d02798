"""Ending open connections whose credential ends (revoked, disabled, logged out, expired).

One per web process. Each WebSocket and SSE stream registers its credential here with a
callback that closes it. The watch follows the revocation channel
(backend/services/revocation.py) and calls back every registered connection the
announcement concerns; an access token's expiry is a timer. Announcements can only be
missed while the channel is not subscribed, so every re-subscription re-checks every
watched credential against its stored state, and so does a registration that raced an
announcement (its credential was checked before the announcement arrived).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis

from backend.constants import credential_revocations_channel
from backend.errors import Unauthorized
from backend.services.authentication import Credential, authenticate_credential
from backend.services.revocation import Revocation, RevocationKind
from backend.settings import Settings
from backend.streams.channel_subscriber import ChannelSubscriber

log = logging.getLogger("sluice.auth")

EXPIRED_MESSAGE = "Access token expired: refresh it and connect again"
SUBSCRIBE_TIMEOUT_SECONDS = 2.0
# A mark taken while the channel is not subscribed: the registration always re-checks.
UNSUBSCRIBED = -1

OnEnd = Callable[[str], None]


class Watched:
    """One open connection's credential; `end` calls the connection back once."""

    __slots__ = ("credential", "ended", "on_end", "timer")

    def __init__(self, credential: Credential, on_end: OnEnd) -> None:
        self.credential = credential
        self.on_end = on_end
        self.ended = False
        self.timer: asyncio.TimerHandle | None = None

    def end(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        if self.timer is not None:
            self.timer.cancel()
        self.on_end(reason)

    def concerned_by(self, revocation: Revocation) -> bool:
        if revocation.kind is RevocationKind.USER:
            return True
        if revocation.kind is RevocationKind.API_KEY:
            return self.credential.api_key_id == revocation.credential_id
        return self.credential.login_id == revocation.credential_id


class CredentialWatch:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.channel = credential_revocations_channel(settings.redis_prefix)
        self.by_user: dict[int, set[Watched]] = {}
        self.subscriber = ChannelSubscriber(
            redis, self.channel, self.dispatch, self.resubscribed, name="revocation channel"
        )
        self.subscribed = self.subscriber.subscribed
        # Bumped by every announcement and every (re)subscription.
        self.generation = 0
        self.rechecks: set[asyncio.Task[None]] = set()

    def mark(self) -> int:
        """Take before checking a credential; pass to `watch` when the connection opens."""
        return self.generation if self.subscribed.is_set() else UNSUBSCRIBED

    def start(self) -> None:
        self.subscriber.start()

    async def watch(self, credential: Credential, on_end: OnEnd, mark: int) -> Watched:
        """Follow `credential` for one connection until `unwatch`; `on_end(reason)` is
        called at most once, possibly before this returns."""
        if not await self.subscriber.wait_subscribed(SUBSCRIBE_TIMEOUT_SECONDS):
            log.warning("revocation channel not subscribed yet; checking the credential")
        watched = Watched(credential, on_end)
        self.by_user.setdefault(credential.user.id, set()).add(watched)
        if credential.expires_at is not None:
            delay = max(0.0, credential.expires_at - time.time())
            watched.timer = asyncio.get_running_loop().call_later(
                delay, watched.end, EXPIRED_MESSAGE
            )
        if mark == UNSUBSCRIBED or mark != self.generation or not self.subscribed.is_set():
            await self.recheck(watched)
        return watched

    def unwatch(self, watched: Watched) -> None:
        if watched.timer is not None:
            watched.timer.cancel()
        user_id = watched.credential.user.id
        watchers = self.by_user.get(user_id)
        if watchers is not None:
            watchers.discard(watched)
            if not watchers:
                del self.by_user[user_id]

    async def recheck(self, *watchers: Watched) -> None:
        """End the connections if their (one) credential no longer authenticates."""
        try:
            await authenticate_credential(watchers[0].credential.token, self.settings, self.redis)
        except Unauthorized as error:
            for watched in watchers:
                watched.end(error.message)
        except Exception:
            log.warning("re-checking a watched credential failed", exc_info=True)

    def recheck_all(self) -> None:
        """Every watched credential once (many connections may share one token)."""
        by_token: dict[str, list[Watched]] = {}
        for watchers in self.by_user.values():
            for watched in watchers:
                by_token.setdefault(watched.credential.token, []).append(watched)
        for watchers in by_token.values():
            task = asyncio.create_task(self.recheck(*watchers))
            self.rechecks.add(task)
            task.add_done_callback(self.rechecks.discard)

    def dispatch(self, data: bytes | str) -> None:
        self.generation += 1
        revocation = Revocation.decode(data.decode() if isinstance(data, bytes) else data)
        if revocation is None:
            return
        for watched in list(self.by_user.get(revocation.user_id, ())):
            if watched.concerned_by(revocation):
                watched.end(revocation.reason)

    def resubscribed(self, after_loss: bool) -> None:
        self.generation += 1
        if after_loss:
            # Announcements made meanwhile were not heard: ask the state.
            self.recheck_all()

    async def stop(self) -> None:
        await self.subscriber.stop()
        tasks = list(self.rechecks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.by_user.clear()
