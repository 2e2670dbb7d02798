"""HTTP/1.1 over a raw socket, for bodies no well-behaved client sends: huge, chunked,
hostile. One thread streams the body while another reads the response, so a server
that answers early (a 413 before the body is in) is seen doing so, with how much had
been sent by then; a failed write (the server closed) never loses the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

CHUNK = 64 * 1024
TIMEOUT_SECONDS = 60.0
T = TypeVar("T")


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client had written when the response arrived

    def json(self) -> Any:
        return json.loads(self.body)


def repeated(piece: bytes, total: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """`total` bytes of `piece` repeated, in chunks of about `chunk` bytes."""
    block = piece * max(1, chunk // len(piece))
    sent = 0
    while sent < total:
        part = block[: total - sent]
        sent += len(part)
        yield part


def read_response(stream: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    status = int(stream.readline().decode("latin-1").split(" ")[1])
    headers = {}
    while (line := stream.readline().decode("latin-1").strip()) != "":
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    return status, headers, stream.read(length) if length else b""


def exchange(port: int, head: bytes, body: Iterable[bytes], chunked: bool) -> RawResponse:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_SECONDS)
    answered = threading.Event()
    sent = 0

    def write() -> None:
        nonlocal sent
        try:
            sock.sendall(head)
            for piece in body:
                if answered.is_set():
                    return
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
                sent += len(piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed while the body was still coming

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        with sock.makefile("rb") as stream:
            status, headers, payload = read_response(stream)
        sent_when_answered = sent
    finally:
        answered.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        writer.join(TIMEOUT_SECONDS)
        sock.close()
    return RawResponse(status, headers, payload, sent_when_answered)


async def in_own_thread(function: Callable[..., T], *args: Any) -> T:
    """Run blocking `function` on a thread of its own (the default pool has only a few)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = function(*args)
        except BaseException as error:
            loop.call_soon_threadsafe(future.set_exception, error)
        else:
            loop.call_soon_threadsafe(future.set_result, result)

    threading.Thread(target=run, daemon=True).start()
    return await future


async def send_request(
    port: int,
    method: str,
    path: str,
    body: Iterable[bytes],
    *,
    headers: dict[str, str] | None = None,
    content_length: int | None = None,
) -> RawResponse:
    """Send `body` chunked (or with `content_length`, if given) and read the response."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    chunked = content_length is None
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {content_length}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return await in_own_thread(exchange, port, head, body, chunked)
