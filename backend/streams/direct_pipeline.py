"""A pipeline of commands on one connection held for the purpose, without redis-py's
per-pipeline machinery.

The chat worker's `EventWriter` sends a pipeline per batch of token appends, hundreds a
second under load. Through redis-py each one went through the retry wrapper, a checkout
from the pool (under its lock, with a zero-timeout read to see that the connection is
clean: a timer and a trip through the event loop), a command stack of objects packed one
by one, an `asyncio.timeout` for the write and another for every reply, and the response
callbacks; py-spy put that at about 8% of the chat worker's CPU at 100 streams. Here the
batch is packed by hiredis into one buffer, written on a connection this pipeline keeps
(taken from the client's pool once, so closing the client closes it), and its replies
read under one timeout for the whole round trip.

Failures are redis-py's: a lost or refused connection raises `ConnectionError`, a Redis
that stops answering `TimeoutError` (after the client's socket timeout), and the
connection is dropped, to be opened again by the next call; a command's own error comes
back as its reply (`execute(raise_on_error=False)`), so one bad command fails alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from backend.connections import drop_and_raise

Command = Sequence[str | bytes | int | float]


class DirectPipeline:
    """Runs batches of commands in order on one connection; one batch at a time."""

    def __init__(self, redis: Redis) -> None:
        self.pool = redis.connection_pool
        self.connection: AbstractConnection | None = None

    async def execute(self, commands: Sequence[Command]) -> list[object]:
        """Each command's reply, or its error as an exception instance, in order."""
        connection = self.connection
        if connection is None:
            connection = self.connection = await self.pool.get_connection()
        elif not connection.is_connected:
            await connection.connect()
        packed = b"".join([hiredis.pack_command(tuple(command)) for command in commands])
        parser = connection._parser
        try:
            async with asyncio.timeout(connection.socket_timeout):
                writer = connection._writer
                assert writer is not None  # connected above
                writer.write(packed)
                await writer.drain()
                return [await parser.read_response() for _ in commands]
        except BaseException as exc:
            await drop_and_raise(connection, exc, "on a pipeline of task events")

    async def aclose(self) -> None:
        """Give the connection back to the client's pool."""
        connection, self.connection = self.connection, None
        if connection is not None:
            await self.pool.release(connection)
