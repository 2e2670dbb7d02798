"""A fake Cohere v2 upstream speaking the real wire contract.

`POST /v2/chat` with `stream: true` answers SSE events message-start, content-start,
content-delta (`delta.message.content.text`), content-end, message-end (with
`delta.usage.billed_units` / `tokens`); without `stream` one JSON response. Failures are
scripted per request like the OpenAI fake: model `fail-429` or `X-Fake-Failure: 429`.

In tests: `async with fake_cohere_server() as fake: ...` (`fake.base_url` has no /v2).
Standalone: `python -m tests.support.fake_cohere --port 9200 --tokens-per-second 50 --tokens 200`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.fake_http import (
    FAIL_AFTER_TOKENS,
    MID_STREAM_FAILURES,
    RETRY_AFTER_SECONDS,
    Exchange,
    Failure,
    FakeHttpServer,
    Pacer,
    Request,
    command_line,
    failure_of,
    message_text,
    message_words,
    reply_tokens,
)

# Cohere bills fewer input tokens than it processes (the system preamble is free).
PREAMBLE_TOKENS = 64

MALFORMED_EVENT = b'event: content-delta\ndata: {"type":"content-delta",\n\n'


billed_input_tokens = message_words


def usage_of(messages: list[dict[str, Any]], output_tokens: int) -> dict[str, Any]:
    billed = billed_input_tokens(messages)
    return {
        "billed_units": {"input_tokens": billed, "output_tokens": output_tokens},
        "tokens": {"input_tokens": billed + PREAMBLE_TOKENS, "output_tokens": output_tokens},
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@dataclass
class FakeCohere:
    """Request handling; defaults overridable per request by `X-Fake-Tokens` / `X-Fake-Rate`."""

    tokens: int = 20
    tokens_per_second: float = 0.0
    api_key: str | None = None

    async def __call__(self, request: Request, exchange: Exchange) -> None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or (
            self.api_key is not None and auth != f"Bearer {self.api_key}"
        ):
            await exchange.send_json(401, {"message": "invalid api token"})
            return
        if (request.method, request.path) != ("POST", "/v2/chat"):
            await exchange.send_json(404, {"message": f"Unknown route {request.path}"})
            return
        try:
            body = request.json()
            model = body["model"]
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            await exchange.send_json(
                400, {"message": "invalid request: model and messages required"}
            )
            return
        failure = failure_of(request, model)
        if failure is Failure.UNAUTHORIZED:
            await exchange.send_json(401, {"message": "invalid api token"})
        elif failure is Failure.RATE_LIMITED:
            await exchange.send_json(
                429,
                {"message": "Trial key limited to 10 API calls / minute."},
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        elif failure is Failure.SERVER_ERROR:
            await exchange.send_json(500, {"message": "internal server error"})
        elif failure is Failure.BAD_REQUEST:
            await exchange.send_json(400, {"message": "invalid request: too many tokens"})
        elif failure is Failure.HANG:
            await exchange.hang()
        else:
            last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
            count = int(request.headers.get("x-fake-tokens", self.tokens))
            cap = body.get("max_tokens")
            tokens = reply_tokens(model, message_text(last_user), count, cap)
            finish = "MAX_TOKENS" if cap and len(tokens) >= cap else "COMPLETE"
            usage = usage_of(messages, len(tokens))
            if body.get("stream"):
                rate = float(request.headers.get("x-fake-rate", self.tokens_per_second))
                await stream_chat(exchange, tokens, finish, usage, rate, failure)
            else:
                message = {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "".join(tokens)}],
                }
                reply = {"id": "fake", "finish_reason": finish, "message": message, "usage": usage}
                await exchange.send_json(200, reply)


async def stream_chat(
    exchange: Exchange,
    tokens: list[str],
    finish: str,
    usage: dict[str, Any],
    rate: float,
    failure: Failure | None,
) -> None:
    await exchange.start_stream()
    completed = False
    try:
        start = {
            "id": "fake",
            "type": "message-start",
            "delta": {
                "message": {"role": "assistant", "content": [], "tool_calls": [], "citations": []}
            },
        }
        content_start = {
            "type": "content-start",
            "index": 0,
            "delta": {"message": {"content": {"type": "text", "text": ""}}},
        }
        if not await exchange.send_chunk(
            sse("message-start", start) + sse("content-start", content_start)
        ):
            return
        pacer = Pacer(rate)
        for index, token in enumerate(tokens):
            if failure in MID_STREAM_FAILURES and index == FAIL_AFTER_TOKENS:
                completed = await exchange.fail_mid_stream(failure, MALFORMED_EVENT)
                return
            if await exchange.sleep_or_gone(pacer.delay_before(index)):
                return
            delta = {
                "type": "content-delta",
                "index": 0,
                "delta": {"message": {"content": {"text": token}}},
            }
            if not await exchange.send_chunk(sse("content-delta", delta)):
                return
        end_delta: dict[str, Any] = {"finish_reason": finish}
        if failure is not Failure.NO_USAGE:
            end_delta["usage"] = usage
        tail = sse("content-end", {"type": "content-end", "index": 0}) + sse(
            "message-end", {"type": "message-end", "delta": end_delta}
        )
        if not await exchange.send_chunk(tail):
            return
        await exchange.end_stream()
        completed = True
    finally:
        exchange.finish_stream(completed)


class FakeCohereServer(FakeHttpServer):
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@asynccontextmanager
async def fake_cohere_server(
    tokens: int = 20, tokens_per_second: float = 0.0, api_key: str | None = None
) -> AsyncIterator[FakeCohereServer]:
    """Run the fake on a free port in this event loop for the duration of the block."""
    server = FakeCohereServer(FakeCohere(tokens, tokens_per_second, api_key))
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def main() -> None:
    args = command_line(__doc__.splitlines()[0], 9200)
    handler = FakeCohere(args.tokens, args.tokens_per_second, args.api_key)
    asyncio.run(FakeCohereServer(handler, args.port).serve_forever())


if __name__ == "__main__":
    main()
