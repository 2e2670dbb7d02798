"""Redis connections shared by web and workers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import NoReturn

import hiredis
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.settings import Settings

log = logging.getLogger("sluice.redis")

CONNECT_TIMEOUT_SECONDS = 1.0
STARTUP_ATTEMPTS = 5
STARTUP_RETRY_SECONDS = 1.0
# A blocking read waits at most this share of the socket timeout, so its reply (sent when
# the block ends) arrives well within the timeout.
BLOCKING_READ_SHARE = 0.5


async def drop_and_raise(
    connection: AbstractConnection, error: BaseException, doing: str
) -> NoReturn:
    """Ends an exchange with Redis that `error` cut short (a write, a round trip under
    `asyncio.timeout`): the connection may be mid-command or mid-reply, so it is dropped,
    never reused as it is (the next command opens it again). A timeout or a socket error
    is raised as redis-py's own, which callers handle; anything else (a cancel, an error
    the parser raised: closed, LOADING) as it came."""
    await connection.disconnect(nowait=True)
    if isinstance(error, TimeoutError):  # before OSError, its base class
        raise RedisTimeoutError(f"Timeout {doing}") from None
    if isinstance(error, OSError):
        raise RedisConnectionError(f"Error {doing}: {error}") from error
    raise error


class _CPacking(AbstractConnection):
    """Packs commands with hiredis' C packer.

    redis-py 5 (the newest arq allows) packs asyncio commands in Python, growing one
    buffer by a join per argument: the stream hub's XREAD over 200 streams took about a
    millisecond to pack, a quarter of a busy web process's CPU, and every token's XADD
    paid ~15 µs. The bytes are the same; the sync client packs this way already.
    """

    def pack_command(self, *args: object) -> list[bytes]:
        command = args[0]
        if isinstance(command, str):
            args = (*command.encode().split(), *args[1:])
        elif isinstance(command, bytes) and b" " in command:
            args = (*command.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from exc

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        """Writes in the caller's task under `asyncio.timeout`.

        With a socket timeout set, redis-py writes under `asyncio.wait_for`: a task per
        command, and on Python 3.11 a cancel that lands as the write completes is lost
        (CPython gh-86296). An SSE request cancelled by its client's disconnect while
        subscribing then went on waiting for events, holding the stream's lease until
        its next heartbeat. `asyncio.timeout` keeps the cancel, and spares the task.
        """
        if not self.socket_timeout:
            await super().send_packed_command(command, check_health)
            return
        if not self.is_connected:
            await self.connect()
        elif check_health:
            await self.check_health()
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            async with asyncio.timeout(self.socket_timeout):
                self._writer.writelines(command)
                await self._writer.drain()
        except BaseException as exc:
            await drop_and_raise(self, exc, "writing to socket")


class PackedConnection(_CPacking, Connection):
    pass


class PackedSSLConnection(_CPacking, SSLConnection):
    pass


class PackedUnixConnection(_CPacking, UnixDomainSocketConnection):
    pass


PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: PackedConnection,
    SSLConnection: PackedSSLConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
}


def redis_settings(settings: Settings) -> RedisSettings:
    """For arq's own tools (the worker health check), which open their own pool."""
    return RedisSettings.from_dsn(settings.redis_url)


def blocking_read_ms(settings: Settings, wanted_seconds: float) -> int:
    """How long a blocking read (XREAD BLOCK) may wait: `wanted_seconds`, capped well
    below the socket timeout, which would otherwise end a quiet read as a failure."""
    cap = settings.redis_socket_timeout_seconds * BLOCKING_READ_SHARE
    return max(1, int(min(wanted_seconds, cap) * 1000))


def redis_pool(settings: Settings, queue_name: str = default_queue_name) -> ArqRedis:
    """An arq client (redis-py asyncio that can also enqueue jobs) on C-packing
    connections; connects lazily.

    Every read has REDIS_SOCKET_TIMEOUT_SECONDS: a Redis that stops answering (paused,
    failing over, a half-open connection) raises `TimeoutError` (a 503 on the web, a
    retried step in a worker) instead of hanging the request or the job for good.
    Blocking reads stay below it (`blocking_read_ms`); pub/sub reads pass their own.

    No `CLIENT SETINFO` on connecting (`lib_name`/`lib_version`, informational only):
    redis-py connects under the pool's lock, and reading those replies from a paused
    Redis took a socket timeout each, so N requests needing a new connection waited
    1, 2, …, N timeouts in turn; without them a connect is the TCP handshake alone and
    every request fails after one timeout (tests/test_redis_pause.py).
    """
    pool = ConnectionPool.from_url(
        settings.redis_url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=settings.redis_socket_timeout_seconds,
        lib_name=None,
        lib_version=None,
    )
    pool.connection_class = PACKED.get(pool.connection_class, pool.connection_class)
    return ArqRedis(pool, default_queue_name=queue_name)


async def open_redis(settings: Settings, queue_name: str = default_queue_name) -> ArqRedis:
    """`redis_pool`, once Redis answers: it may still be starting beside us."""
    redis = redis_pool(settings, queue_name)
    attempt = 1
    while True:
        try:
            await redis.ping()
            return redis
        except (RedisError, OSError) as exc:
            if attempt == STARTUP_ATTEMPTS:
                await redis.aclose()
                raise
            attempt += 1
            log.warning("redis does not answer yet (%s); retrying", exc)
            await asyncio.sleep(STARTUP_RETRY_SECONDS)
