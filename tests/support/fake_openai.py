"""A fake OpenAI-compatible upstream speaking the real wire contract.

`POST /v1/chat/completions` (SSE chunks with `choices[0].delta.content`, a usage chunk
when `stream_options.include_usage`, then `data: [DONE]`; or one JSON completion),
`GET /v1/models`, `POST /v1/images/generations` (b64_json). Failures are scripted per
request (see `Failure`): model `fail-429` or header `X-Fake-Failure: 429`.

In tests: `async with fake_openai_server() as fake: ...` (`fake.base_url` ends in /v1).
Standalone, for benchmarks:
`python -m tests.support.fake_openai --port 9100 --tokens-per-second 50 --tokens 200`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import zlib
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

MODELS = ["fake-gpt", "echo", "fake-image"]


def tiny_png() -> bytes:
    """A valid 1x1 PNG, so image consumers can decode what the fake returns."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG_B64 = base64.b64encode(tiny_png()).decode()

MALFORMED_EVENT = b'data: {"id":"chatcmpl-fake","choices":[{"delta":\n\n'


prompt_tokens = message_words


def error_body(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@dataclass
class FakeOpenAI:
    """Request handling; `tokens`/`tokens_per_second` are defaults a request may override
    with `X-Fake-Tokens` / `X-Fake-Rate` headers (and caps with `max_tokens`)."""

    tokens: int = 20
    tokens_per_second: float = 0.0
    api_key: str | None = None

    async def __call__(self, request: Request, exchange: Exchange) -> None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or (
            self.api_key is not None and auth != f"Bearer {self.api_key}"
        ):
            await exchange.send_json(
                401,
                error_body(
                    "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                ),
            )
            return
        route = (request.method, request.path)
        if route == ("GET", "/v1/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in MODELS]
            await exchange.send_json(200, {"object": "list", "data": data})
        elif route == ("POST", "/v1/chat/completions"):
            await self.chat(request, exchange)
        elif route == ("POST", "/v1/images/generations"):
            await self.images(request, exchange)
        else:
            await exchange.send_json(
                404, error_body(f"Unknown route {request.path}", "invalid_request_error", None)
            )

    async def fail_before_response(self, failure: Failure, exchange: Exchange) -> bool:
        """Answer with the scripted error status if there is one; True when it did."""
        if failure is Failure.UNAUTHORIZED:
            body = error_body(
                "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
            await exchange.send_json(401, body)
        elif failure is Failure.RATE_LIMITED:
            body = error_body("Rate limit reached for requests.", "requests", "rate_limit_exceeded")
            await exchange.send_json(429, body, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        elif failure is Failure.SERVER_ERROR:
            body = error_body(
                "The server had an error processing your request.", "server_error", None
            )
            await exchange.send_json(500, body)
        elif failure is Failure.BAD_REQUEST:
            body = error_body(
                "This model's maximum context length is exceeded.",
                "invalid_request_error",
                "context_length_exceeded",
            )
            await exchange.send_json(400, body)
        elif failure is Failure.HANG:
            await exchange.hang()
        else:
            return False
        return True

    async def chat(self, request: Request, exchange: Exchange) -> None:
        try:
            body = request.json()
            model = body["model"]
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            await exchange.send_json(
                400,
                error_body(
                    "Body must be JSON with model and messages.", "invalid_request_error", None
                ),
            )
            return
        failure = failure_of(request, model)
        if failure and await self.fail_before_response(failure, exchange):
            return
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        count = int(request.headers.get("x-fake-tokens", self.tokens))
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        tokens = reply_tokens(model, message_text(last_user), count, cap)
        usage = {
            "prompt_tokens": prompt_tokens(messages),
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens(messages) + len(tokens),
        }
        finish = "length" if cap and len(tokens) >= cap else "stop"
        if not body.get("stream"):
            await exchange.send_json(200, completion(model, "".join(tokens), finish, usage))
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if failure is Failure.NO_USAGE:
            include_usage = False
        rate = float(request.headers.get("x-fake-rate", self.tokens_per_second))
        await stream_chat(
            exchange, model, tokens, finish, usage if include_usage else None, rate, failure
        )

    async def images(self, request: Request, exchange: Exchange) -> None:
        body = request.json()
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            await exchange.send_json(
                400, error_body("prompt is required.", "invalid_request_error", None)
            )
            return
        failure = failure_of(request, str(body.get("model", "")))
        if failure and await self.fail_before_response(failure, exchange):
            return
        n = int(body.get("n") or 1)
        item = {"b64_json": PNG_B64, "revised_prompt": prompt}
        await exchange.send_json(200, {"created": int(time.time()), "data": [item] * n})


def completion(model: str, text: str, finish: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        ],
        "usage": usage,
    }


async def stream_chat(
    exchange: Exchange,
    model: str,
    tokens: list[str],
    finish: str,
    usage: dict[str, int] | None,
    rate: float,
    failure: Failure | None,
) -> None:
    created = int(time.time())
    head = (
        f'data: {{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":{created},'
        f'"model":{json.dumps(model)},"choices":'
    ).encode()

    def event(choices: str, extra: str = "") -> bytes:
        return head + choices.encode() + extra.encode() + b"}\n\n"

    await exchange.start_stream()
    completed = False
    try:
        first = '[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]'
        if not await exchange.send_chunk(event(first)):
            return
        pacer = Pacer(rate)
        for index, token in enumerate(tokens):
            if failure in MID_STREAM_FAILURES and index == FAIL_AFTER_TOKENS:
                completed = await exchange.fail_mid_stream(failure, MALFORMED_EVENT)
                return
            if await exchange.sleep_or_gone(pacer.delay_before(index)):
                return
            choice = (
                f'[{{"index":0,"delta":{{"content":{json.dumps(token)}}},"finish_reason":null}}]'
            )
            if not await exchange.send_chunk(event(choice)):
                return
        last = f'[{{"index":0,"delta":{{}},"finish_reason":"{finish}"}}]'
        if not await exchange.send_chunk(event(last)):
            return
        if usage is not None and not await exchange.send_chunk(
            event("[]", f',"usage":{json.dumps(usage)}')
        ):
            return
        await exchange.send_chunk(b"data: [DONE]\n\n")
        await exchange.end_stream()
        completed = True
    finally:
        exchange.finish_stream(completed)


@asynccontextmanager
async def fake_openai_server(
    tokens: int = 20, tokens_per_second: float = 0.0, api_key: str | None = None
) -> AsyncIterator[FakeOpenAIServer]:
    """Run the fake on a free port in this event loop for the duration of the block."""
    server = FakeOpenAIServer(FakeOpenAI(tokens, tokens_per_second, api_key))
    await server.start()
    try:
        yield server
    finally:
        await server.close()


class FakeOpenAIServer(FakeHttpServer):
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


def main() -> None:
    args = command_line(__doc__.splitlines()[0], 9100)
    handler = FakeOpenAI(args.tokens, args.tokens_per_second, args.api_key)
    asyncio.run(FakeOpenAIServer(handler, args.port).serve_forever())


if __name__ == "__main__":
    main()
