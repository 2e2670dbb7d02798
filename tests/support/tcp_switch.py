"""A TCP forwarder that can be switched off and on, as a storage server that goes away
and comes back: off closes the listening socket and drops every open connection, so a
client sees refused connections (or a reset mid-request) until it is switched on again
on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class TcpSwitch:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        # Bytes forwarded towards the upstream; past `budget` the switch turns off.
        self.forwarded = 0
        self.budget: int | None = None

    async def on(self) -> None:
        self.forwarded = 0
        if self.server is not None:
            return
        self.server = await asyncio.start_server(self.accept, "127.0.0.1", self.port)

    async def off(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self.writers.clear()

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers.update({writer, up_writer})
        await asyncio.gather(
            self.pipe(reader, up_writer, counted=True),
            self.pipe(up_reader, writer, counted=False),
            return_exceptions=True,
        )

    async def pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counted: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if counted:
                    self.forwarded += len(data)
                    if self.budget is not None and self.forwarded > self.budget:
                        await self.off()
                        return
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()
