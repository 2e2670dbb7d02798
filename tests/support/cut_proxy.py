"""A TCP proxy that can leave the server with half-open connections, as a phone does.

When a phone changes network its old connections vanish without a FIN or RST: the
server keeps writing and sees no error. `cut_clients()` reproduces that: each client
socket is closed (the client sees the drop), while the proxy's connection to the
server stays open and is no longer read. What the server wrote afterwards can still
be inspected with `server_bytes()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

CHUNK = 65536


@dataclass
class ProxiedConnection:
    client_writer: asyncio.StreamWriter
    server_reader: asyncio.StreamReader
    server_writer: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    # Bytes the server sent, kept so a test can inspect what it wrote into the dead
    # connection; only read again after the cut by `server_bytes`.
    from_server: bytearray = field(default_factory=bytearray)
    cut: bool = False


class CuttableProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.connections: list[ProxiedConnection] = []
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.accept, "127.0.0.1", 0)

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(
            "127.0.0.1", self.upstream_port
        )
        connection = ProxiedConnection(writer, server_reader, server_writer)
        self.connections.append(connection)
        connection.pumps = [
            asyncio.create_task(self.forward(reader, server_writer)),
            asyncio.create_task(self.backward(connection)),
        ]

    async def forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()

    async def backward(self, connection: ProxiedConnection) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await connection.server_reader.read(CHUNK):
                connection.from_server += data
                connection.client_writer.write(data)
                await connection.client_writer.drain()
        connection.client_writer.close()

    async def cut_clients(self) -> None:
        """Drop every client connection; leave the server's side open and unread."""
        for connection in self.connections:
            if connection.cut:
                continue
            connection.cut = True
            for pump in connection.pumps:
                pump.cancel()
            await asyncio.gather(*connection.pumps, return_exceptions=True)
            connection.client_writer.transport.abort()

    async def server_bytes(
        self, connection: ProxiedConnection, until: bytes, within: float
    ) -> bytes:
        """Read what the server wrote into a cut connection until `until` shows up (or
        `within` seconds pass); returns everything it wrote since the connection opened."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while until not in connection.from_server:
                    data = await connection.server_reader.read(CHUNK)
                    if not data:
                        break
                    connection.from_server += data
        return bytes(connection.from_server)

    async def close(self) -> None:
        await self.cut_clients()
        for connection in self.connections:
            connection.server_writer.transport.abort()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@contextlib.asynccontextmanager
async def cuttable_proxy(upstream_port: int) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy(upstream_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
