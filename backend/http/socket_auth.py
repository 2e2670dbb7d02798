"""A WebSocket's credential for its whole life: checked again before every command,
replaced when the client re-authenticates, and the socket closed (4401) when it ends.

Authentication at the handshake is not enough for a connection that lasts hours: an API
key deleted, an account disabled, a logout or an expired access token must stop what
the socket can do next (each command re-checks the credential's current state) and
close it within moments even if it sends nothing (`ConnectionGuard`, pushed by the
revocation broadcast and the token's expiry).
"""

from __future__ import annotations

from quart import websocket
from redis.asyncio import Redis

from backend.errors import Unauthorized
from backend.http.credential_guard import CLOSE_UNAUTHORIZED, ConnectionGuard
from backend.services.authentication import Credential, authenticate_credential
from backend.services.credential_watch import CredentialWatch
from backend.settings import Settings
from schemas.ws import ErrorReply

MAX_CLOSE_REASON = 120


async def refuse(message: str) -> None:
    """An `error` message with code 401, then close code 4401 with the reason."""
    await websocket.send(ErrorReply(code=401, message=message).model_dump_json())
    await websocket.close(CLOSE_UNAUTHORIZED, message[:MAX_CLOSE_REASON])


class SocketCredential:
    """The credential one socket acts with, and the guard that closes the socket."""

    def __init__(
        self, credential: Credential, watch: CredentialWatch, redis: Redis, settings: Settings
    ) -> None:
        self.credential = credential
        self.watch = watch
        self.redis = redis
        self.settings = settings
        self.guard = ConnectionGuard()

    async def start(self, mark: int) -> None:
        await self.guard.start(self.watch, self.credential, mark)

    def stop(self) -> None:
        self.guard.stop(self.watch)

    def restart(self) -> None:
        """The process is shutting down (backend/http/drain.py): the socket closes 1012."""
        self.guard.restart()

    @property
    def restarting(self) -> bool:
        return self.guard.restarting

    @property
    def ended(self) -> str | None:
        """Why the socket must close, once the credential has ended."""
        return self.guard.reason

    async def current(self) -> Credential | None:
        """The credential as it is now, before a command; None (and the socket is to be
        closed) if it no longer authenticates."""
        if self.guard.reason is not None:
            return None
        try:
            self.credential = await authenticate_credential(
                self.credential.token, self.settings, self.redis
            )
        except Unauthorized as error:
            self.guard.end(error.message)
            return None
        return self.credential

    async def replace(self, token: str) -> Credential:
        """Re-authenticate with a new token of the same user (e.g. a refreshed access
        token before the old one expires); raises Unauthorized, or ValueError for
        another user's token. The old credential stops being watched."""
        mark = self.watch.mark()
        fresh = await authenticate_credential(token, self.settings, self.redis)
        if fresh.user.id != self.credential.user.id:
            raise ValueError("That token belongs to another user: open a new connection for them")
        self.stop()
        self.credential = fresh
        self.guard = ConnectionGuard()
        await self.start(mark)
        return fresh
