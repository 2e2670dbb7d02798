"""An OpenAI-compatible chat completion stream, read straight off aiohttp.

Why not the `openai` SDK here: a chat worker reads one chunk per token of every answer it
streams, and the SDK's streaming path (request options, its httpx-style wrapper over
aiohttp, a decoded line iterator) cost more worker CPU per token than the rest of the
token's path through Sluice, plus about a millisecond per request to build it. This
reader sends the request with aiohttp, splits the body on SSE line ends itself and
parses each `data:` line with orjson. What the SDK did for us is done here too, and
tested against the fake upstream (tests/test_providers_openai.py): error statuses with
the upstream's message and `Retry-After`, retries with back-off before the stream starts
(connection errors, timeouts, 408/409/429/5xx), timeouts between chunks, a connection
closed mid-stream, malformed chunks, and an error object sent mid-stream. The SDK still
serves the non-streaming calls (embeddings, images).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import aiohttp
import orjson

from backend.providers import failures
from backend.providers.base import Burst, ProviderError, Usage
from backend.providers.openai_chunks import StreamTally
from backend.providers.read_watchdog import ReadWatchdog

# The SDK's back-off: 0.5 s doubling up to 8 s, minus up to a quarter of jitter; a
# server's Retry-After is honoured up to a minute.
INITIAL_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 8.0
MAX_RETRY_AFTER_SECONDS = 60.0
RETRYABLE_STATUSES = frozenset({408, 409, 429})


def unexpected(label: str) -> Callable[[Exception], ProviderError]:
    """An exception that is neither the upstream's nor the transport's: a bug, or a
    response no rule foresaw."""
    return lambda exc: failures.unavailable(label, type(exc).__name__)


def retry_delay(attempt: int, headers: Mapping[str, str] | None) -> float:
    retry_after = failures.retry_after_of(headers)
    if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER_SECONDS:
        return retry_after
    delay = min(INITIAL_RETRY_SECONDS * 2.0**attempt, MAX_RETRY_SECONDS)
    return delay * (1 - 0.25 * random.random())


def error_detail(body: bytes) -> str:
    """The upstream's own message from an error body (`{"error": {"message": …}}`)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace").strip()[:300]
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return ""


def transport_error(exc: BaseException, label: str, timeout: float) -> ProviderError:
    """An aiohttp (or socket) failure as a ProviderError."""
    if failures.refused(exc):
        return failures.unavailable(label, "could not connect: connection refused")
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError and asyncio's
        return failures.timed_out(label, timeout)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return failures.unavailable(label, f"could not connect: {type(exc).__name__}")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return failures.unavailable(label, "the connection closed mid-response")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return failures.unavailable(label, f"the connection failed: {type(exc).__name__}")
    return failures.unavailable(label, type(exc).__name__)


class ChatStreamClient:
    """POSTs to one endpoint's `/chat/completions` and yields its chunks; one aiohttp
    session (and connection pool) per endpoint and key, opened on first use."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        connect_timeout: float,
        max_retries: int,
        key_setting: str,
    ) -> None:
        self.key_setting = key_setting
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {
            # Self-hosted servers (vLLM, Ollama) take any key; send one anyway, as the SDK did.
            "Authorization": f"Bearer {api_key or 'unset'}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }
        self.timeout = timeout
        # `sock_read` bounds each wait for the next bytes, as the SDK's read timeout did,
        # until the response's headers are in; then `ReadWatchdog` does, at less cost.
        self.client_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=timeout
        )
        self.max_retries = max_retries
        self.session: aiohttp.ClientSession | None = None

    def open_session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(
                timeout=self.client_timeout,
                connector=aiohttp.TCPConnector(limit=1000, ttl_dns_cache=300),
                json_serialize=lambda value: orjson.dumps(value).decode(),
            )
        return self.session

    async def respond(self, body: bytes, label: str) -> aiohttp.ClientResponse:
        """A 200 response whose stream is about to start, after any retries."""
        session = self.open_session()
        attempt = 0
        while True:
            headers: Mapping[str, str] | None = None
            try:
                response = await session.post(self.url, data=body, headers=self.headers)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                error = transport_error(exc, label, self.timeout)
            else:
                if response.status == 200:
                    return response
                headers = response.headers
                try:
                    detail = error_detail(await response.read())
                except (aiohttp.ClientError, OSError, TimeoutError):
                    detail = ""
                finally:
                    response.release()
                error = failures.from_status(
                    label, self.key_setting, response.status, detail, headers
                )
                if not retryable_status(response.status, headers):
                    raise error
            if attempt >= self.max_retries:
                raise error
            await asyncio.sleep(retry_delay(attempt, headers))
            attempt += 1

    async def bursts(
        self,
        payload: dict[str, Any],
        label: str,
        *,
        counted: Callable[[str], Usage],
        translate: Callable[[Exception], ProviderError] | None = None,
    ) -> AsyncGenerator[Burst, None]:
        """The stream's delta texts, a list per network read that carried any, then its
        usage (`counted(text)` when the upstream reported none) in a list of its own.

        One generator between the socket and the relay, resumed once a read (a read
        carries several tokens once the worker is busy): not one per chunk, wrapped in
        the provider's own, each resumed once a token. ProviderError for any failure;
        `translate` maps an unexpected exception to one."""
        tally = StreamTally(label)
        try:
            response = await self.respond(orjson.dumps(payload), label)
        except ProviderError:
            raise
        except Exception as exc:
            raise (translate or unexpected(label))(exc) from exc
        watchdog = ReadWatchdog(response, self.timeout)
        content = response.content
        complete = False
        try:
            buffer = b""
            # `readany` itself, not `iter_any()`, whose `__anext__` is one more coroutine
            # a read.
            while data := await content.readany():
                buffer += data
                if b"\n" not in data:
                    continue
                *lines, buffer = buffer.split(b"\n")
                burst, malformed = tally.fold(lines)
                if burst:
                    yield burst
                if malformed is not None:
                    raise malformed
            burst, malformed = tally.fold([buffer])
            if burst:
                yield burst
            if malformed is not None:
                raise malformed
            complete = True
        except ProviderError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise transport_error(exc, label, self.timeout) from exc
        except Exception as exc:
            raise (translate or unexpected(label))(exc) from exc
        finally:
            watchdog.stop()
            # A stream read to its end leaves its connection to the pool; one cut short
            # (cancelled, failed) is closed, which also tells the upstream to stop.
            if complete:
                response.release()
            else:
                response.close()
        yield [tally.ending(counted)]

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


def retryable_status(status: int, headers: Mapping[str, str] | None) -> bool:
    """What the SDK retries: 408, 409, 429 and 5xx, unless the server says not to."""
    should = (headers or {}).get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return status in RETRYABLE_STATUSES or status >= 500
