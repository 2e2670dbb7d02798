"""A lean HTTP/1.1 server on raw asyncio streams, shared by the fake upstream providers.

Heavier servers would become the bottleneck when hundreds of benchmark streams each
receive a chunk every few milliseconds; this one does the minimum: keep-alive,
Content-Length request bodies, JSON and chunked (SSE) responses, and abrupt drops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Stats:
    """What the fake saw, so tests can assert on the upstream side of a stream."""

    requests: list[Request] = field(default_factory=list)
    open_streams: int = 0
    completed_streams: int = 0
    disconnected_streams: int = 0


class Exchange:
    """One request's response side: a JSON reply, or a chunked stream the client may abandon."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: Stats
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.stats = stats
        self.keep_alive = True
        self.streaming = False

    @property
    def client_gone(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def send_json(
        self, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(payload).encode()
        head = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        self.writer.write(self._head(status, head | (headers or {})) + body)
        await self.writer.drain()

    async def start_stream(self) -> None:
        self.streaming = True
        self.stats.open_streams += 1
        head = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
        }
        self.writer.write(self._head(200, head))
        await self.writer.drain()

    async def send_chunk(self, data: bytes) -> bool:
        """Write one chunk; False once the client has gone away (the stream should stop)."""
        if self.client_gone:
            return False
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        try:
            await self.writer.drain()
        except ConnectionError:
            return False
        return True

    async def end_stream(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    def drop(self) -> None:
        """Cut the connection without finishing the response, like a crashed upstream."""
        self.keep_alive = False
        self.writer.transport.abort()

    async def hang(self) -> None:
        """Never answer; return only when the client gives up and closes the connection."""
        self.keep_alive = False
        with contextlib.suppress(ConnectionError):
            await self.reader.read()

    async def sleep_or_gone(self, seconds: float) -> bool:
        """Pace the stream; True if the client went away meanwhile."""
        if seconds > 0:
            await asyncio.sleep(seconds)
        return self.client_gone

    async def fail_mid_stream(self, failure: Failure, malformed_event: bytes) -> bool:
        """Break a started stream as scripted; True if the response still ended cleanly."""
        if failure is Failure.MALFORMED:
            await self.send_chunk(malformed_event)
            await self.end_stream()
            return True
        if failure is Failure.TRUNCATE:
            await self.end_stream()
            return True
        if failure is Failure.DROP:
            self.drop()
        else:
            await self.hang()
        return False

    def finish_stream(self, completed: bool) -> None:
        self.stats.open_streams -= 1
        if completed:
            self.stats.completed_streams += 1
        else:
            self.stats.disconnected_streams += 1
            self.keep_alive = False


Handler = Callable[[Request, Exchange], Awaitable[None]]


class FakeHttpServer:
    """Serves `handler` on 127.0.0.1; port 0 picks a free port."""

    def __init__(self, handler: Handler, port: int = 0, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.stats = Stats()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def serve_forever(self) -> None:
        await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                self.stats.requests.append(request)
                exchange = Exchange(reader, writer, self.stats)
                await self.handler(request, exchange)
                if not exchange.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        return Request(method, target.split("?", 1)[0], headers, body)


class Failure(StrEnum):
    """Scripted upstream misbehaviour, chosen per request by model name `fail-<mode>`
    or by the `X-Fake-Failure: <mode>` header."""

    BAD_REQUEST = "400"
    UNAUTHORIZED = "401"
    RATE_LIMITED = "429"
    SERVER_ERROR = "500"
    HANG = "hang"
    STALL = "stall"
    MALFORMED = "malformed"
    DROP = "drop"
    TRUNCATE = "truncate"
    NO_USAGE = "nousage"


FAIL_AFTER_TOKENS = 3
MID_STREAM_FAILURES = frozenset({Failure.MALFORMED, Failure.DROP, Failure.STALL, Failure.TRUNCATE})
RETRY_AFTER_SECONDS = 7


def failure_of(request: Request, model: str) -> Failure | None:
    raw = request.headers.get("x-fake-failure") or (
        model.removeprefix("fail-") if model.startswith("fail-") else ""
    )
    return Failure(raw) if raw in Failure._value2member_map_ else None


def token_text(index: int) -> str:
    return f"tok{index} "


def reply_tokens(model: str, last_user_text: str, default_count: int, cap: int | None) -> list[str]:
    """`echo*` models repeat the last user text word by word; others say tok0 tok1 ..."""
    if model.startswith("echo"):
        words = last_user_text.split(" ")
        tokens = [word + " " for word in words[:-1]] + [words[-1]]
    else:
        tokens = [token_text(i) for i in range(default_count)]
    return tokens[:cap] if cap else tokens


def count_words(text: str) -> int:
    """The fake's own "tokenizer" for reported usage: whitespace-separated words."""
    return len(text.split())


def command_line(description: str, default_port: int) -> argparse.Namespace:
    """The options of a fake provider run as its own process (by the benchmarks)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--tokens-per-second", type=float, default=50.0)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--api-key", default=None)
    return parser.parse_args()


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content if part.get("type") == "text")


def message_words(messages: list[dict[str, Any]]) -> int:
    """What the fakes report as input usage: words across all message texts."""
    return sum(count_words(message_text(m)) for m in messages)


class Pacer:
    """Spaces tokens at a fixed rate against absolute deadlines, so slow writes don't drift."""

    def __init__(self, tokens_per_second: float) -> None:
        self.interval = 1.0 / tokens_per_second if tokens_per_second > 0 else 0.0
        self.start = asyncio.get_running_loop().time()

    def delay_before(self, index: int) -> float:
        if not self.interval:
            return 0.0
        return self.start + index * self.interval - asyncio.get_running_loop().time()
