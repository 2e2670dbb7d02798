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
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from backend.providers import failures
from backend.providers.base import ProviderError, Usage
from backend.providers.read_watchdog import ReadWatchdog

# The SDK's back-off: 0.5 s doubling up to 8 s, minus up to a quarter of jitter; a
# server's Retry-After is honoured up to a minute.
INITIAL_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 8.0
MAX_RETRY_AFTER_SECONDS = 60.0
RETRYABLE_STATUSES = frozenset({408, 409, 429})
DATA = b"data:"
DONE = b"[DONE]"


@dataclass(frozen=True, slots=True)
class Chunk:
    """The parts of one `chat.completion.chunk` Sluice uses."""

    text: str
    finished: bool
    usage: Usage | None
    finish_reason: str | None = None


def chunk_of(data: bytes, label: str) -> Chunk | None:
    """The JSON of one `data:` line; None for the closing `[DONE]` or an empty line."""
    data = data.strip()
    if not data or data == DONE:
        return None
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise failures.malformed(label, f"invalid JSON: {exc.msg}") from exc
    if not isinstance(payload, dict):
        raise failures.malformed(label, "a chunk is not a JSON object")
    if error := payload.get("error"):
        detail = error.get("message") if isinstance(error, dict) else str(error)
        raise failures.unavailable(label, f"it reported an error mid-stream: {detail}")
    usage = None
    if reported := payload.get("usage"):
        try:
            usage = Usage(int(reported["prompt_tokens"]), int(reported["completion_tokens"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise failures.malformed(label, "usage without token counts") from exc
    choices = payload.get("choices")
    if not choices:
        return Chunk("", False, usage)
    try:
        choice = choices[0]
        content = (choice.get("delta") or {}).get("content") or ""
        reason = choice.get("finish_reason")
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        raise failures.malformed(label, "a chunk without a choice") from exc
    if not isinstance(content, str):
        raise failures.malformed(label, "delta content is not text")
    return Chunk(content, reason is not None, usage, reason)


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

    async def chunks(self, payload: dict[str, Any], label: str) -> AsyncIterator[Chunk]:
        """The stream's chunks in order; ProviderError for any failure."""
        body = orjson.dumps(payload)
        response = await self.respond(body, label)
        watchdog = ReadWatchdog(response, self.timeout)
        complete = False
        try:
            buffer = b""
            async for data in response.content.iter_any():
                buffer += data
                if b"\n" not in data:
                    continue
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.startswith(DATA):
                        chunk = chunk_of(line[5:], label)
                        if chunk is not None:
                            yield chunk
            if buffer.startswith(DATA) and (chunk := chunk_of(buffer[5:], label)) is not None:
                yield chunk
            complete = True
        except ProviderError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise transport_error(exc, label, self.timeout) from exc
        finally:
            watchdog.stop()
            # A stream read to its end leaves its connection to the pool; one cut short
            # (cancelled, failed) is closed, which also tells the upstream to stop.
            if complete:
                response.release()
            else:
                response.close()

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
