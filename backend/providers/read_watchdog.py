"""A timeout between a streamed response's bytes that costs a timer per period, not per
chunk.

aiohttp's `sock_read` timeout is a timer cancelled and scheduled again on every read from
the socket: for a model's stream, a timer per token (a `TimerHandle`, a heap push, a
cancelled handle left for the loop to drop), which py-spy showed among the chat worker's
top costs per token. Once the response's headers are in, `ReadWatchdog` takes over: aiohttp's
timer is turned off for the rest of that response, and one timer looks every quarter of
the timeout at how many bytes the body has received; when none arrived for the whole
timeout, the body's reader fails with aiohttp's own `ServerTimeoutError`, as `sock_read`
did. So a stalled stream still ends after the timeout (up to a quarter later), and a
flowing one costs four timers per timeout period whatever its rate.
"""

from __future__ import annotations

import asyncio

import aiohttp

CHECKS_PER_TIMEOUT = 4


class ReadWatchdog:
    """Watches one response's body until `stop`."""

    def __init__(self, response: aiohttp.ClientResponse, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.content = response.content
        self.timeout = timeout
        self.period = timeout / CHECKS_PER_TIMEOUT
        self.seen = self.content.total_bytes
        self.quiet_since = self.loop.time()
        self.handle: asyncio.TimerHandle | None = None
        connection = response.connection
        if connection is None or connection.protocol is None:
            return  # the body is already complete: nothing left to wait for
        # aiohttp's per-read timer: not rescheduled from the next read on (each request
        # sets its own again, so a pooled connection's next response has it back).
        connection.protocol.read_timeout = None
        self.handle = self.loop.call_later(self.period, self.check)

    def check(self) -> None:
        now = self.loop.time()
        total = self.content.total_bytes
        if total != self.seen:
            self.seen, self.quiet_since = total, now
        elif now - self.quiet_since >= self.timeout:
            self.handle = None
            self.content.set_exception(
                aiohttp.ServerTimeoutError("Timeout on reading data from socket")
            )
            return
        self.handle = self.loop.call_later(self.period, self.check)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
