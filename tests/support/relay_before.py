"""The chat worker's provider-to-relay path before issue 16's fifth pass, kept to bench
the new one against (bench/bench_worker_paths.py, "relay path"): the provider read a
chunk per generator step (`ChatStreamClient.chunks` over aiohttp's `iter_any`), wrapped
in `OpenAICompatibleProvider.stream`'s step and a `Delta` per token, and the relay's pump
handed each event to the relay through an `asyncio.Queue`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import replace
from typing import Any

import aiohttp
import orjson

from backend.providers.base import (
    ChatRequest,
    Delta,
    ProviderError,
    StreamEvent,
    Usage,
    finish_reason_of,
)
from backend.providers.openai_chunks import DATA, chunk_of
from backend.providers.openai_compatible import (
    OpenAICompatibleProvider,
    sampling_arguments,
    upstream_label,
)
from backend.providers.openai_sse import ChatStreamClient, transport_error
from backend.providers.read_watchdog import ReadWatchdog
from workers.jobs.relay import Ending, Relayed, _Marker


async def chunks_before(
    client: ChatStreamClient, payload: dict[str, Any], label: str
) -> AsyncIterator[Any]:
    body = orjson.dumps(payload)
    response = await client.respond(body, label)
    watchdog = ReadWatchdog(response, client.timeout)
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
        raise transport_error(exc, label, client.timeout) from exc
    finally:
        watchdog.stop()
        if complete:
            response.release()
        else:
            response.close()


async def stream_before(
    provider: OpenAICompatibleProvider, request: ChatRequest
) -> AsyncIterator[StreamEvent]:
    """`OpenAICompatibleProvider.stream` before (the token counting fallback left out:
    the bench's upstream reports usage)."""
    label = upstream_label(request)
    usage: Usage | None = None
    finished = False
    reported: str | None = None
    payload = {
        "model": request.model.upstream,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        **sampling_arguments(request.params, request.model.max_output),
    }
    texts: list[str] = []
    async for chunk in chunks_before(provider.client, payload, label):
        if chunk.usage is not None:
            usage = chunk.usage
        finished = finished or chunk.finished
        reported = chunk.finish_reason or reported
        if chunk.text:
            texts.append(chunk.text)
            yield Delta(chunk.text)
    assert finished and usage is not None
    yield replace(usage, finish_reason=finish_reason_of(reported))


class RelayBefore:
    """workers/jobs/relay.Relay before: a queue item per event."""

    def __init__(
        self,
        upstream: AsyncIterator[StreamEvent],
        send: Callable[[str], Awaitable[object]],
        *,
        window: float,
    ) -> None:
        self.upstream = upstream
        self.send = send
        self.window = window
        self.queue: asyncio.Queue[StreamEvent | Exception | _Marker] = asyncio.Queue()
        self.result = Relayed()

    async def pump(self) -> None:
        try:
            async for item in self.upstream:
                self.queue.put_nowait(item)
            self.queue.put_nowait(_Marker.END)
        except Exception as error:
            self.queue.put_nowait(error)
        finally:
            aclose = getattr(self.upstream, "aclose", None)
            if aclose is not None:
                with suppress(Exception):
                    await aclose()

    async def run(self) -> Relayed:
        pump = asyncio.create_task(self.pump())
        try:
            await self.relay()
        finally:
            if not pump.done():
                pump.cancel()
                with suppress(asyncio.CancelledError):
                    await pump
        return self.result

    async def relay(self) -> None:
        first = True
        while True:
            burst: list[str] = []
            item = await self.queue.get()
            ended = self.take(item, burst)
            if not ended and not first and self.window > 0:
                await asyncio.sleep(self.window)
            while not ended and not self.queue.empty():
                ended = self.take(self.queue.get_nowait(), burst)
            if burst:
                await self.send("".join(burst))
                first = False
            if ended:
                return

    def take(self, item: StreamEvent | Exception | _Marker, burst: list[str]) -> bool:
        if isinstance(item, Delta):
            if item.text:
                burst.append(item.text)
                self.result.text.append(item.text)
            return False
        if isinstance(item, Usage):
            self.result.usage = item
            return False
        if item is _Marker.CANCEL:
            self.result.ending = Ending.CANCELLED
        elif isinstance(item, Exception):
            self.result.ending = Ending.FAILED
            self.result.error = item
        return True
