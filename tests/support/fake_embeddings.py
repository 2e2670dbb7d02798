"""Fake embedding upstreams speaking the real wire contracts, over real sockets.

- OpenAI-compatible `POST /v1/embeddings`: `input` (a string or a list), `model`,
  `encoding_format` (`float`; base64 is refused, as some compatible servers do),
  `dimensions`; answers `data` items with `index` (sent in reverse order, as nothing in
  the contract promises input order) and `usage`. More than 2,048 inputs is a 400.
- Cohere v2 `POST /v2/embed`: `texts`, `model`, `input_type` (required),
  `embedding_types`, `output_dimension`; answers `embeddings.float`. More than 96 texts
  is a 400, as Cohere's limit.

The vectors are deterministic and meaningful: a hashed bag of words (so texts sharing
words are close), scaled by 3 so a client that forgets to normalise is caught. The
model name `wrong-dim` answers one dimension short. Failures are scripted like the chat
fakes: model `fail-<mode>` or header `X-Fake-Failure: <mode>` (400, 401, 429, 500, hang,
malformed).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.fake_http import (
    RETRY_AFTER_SECONDS,
    Exchange,
    Failure,
    FakeHttpServer,
    Request,
    failure_of,
)

DIMENSION = 8
OPENAI_MAX_INPUTS = 2048
COHERE_MAX_TEXTS = 96


def fake_vector(text: str, dimension: int) -> list[float]:
    vector = [0.0] * dimension
    vector[0] = 0.1  # never all zeros
    for word in re.findall(r"\w+", text.lower()):
        code = zlib.crc32(word.encode())
        vector[code % dimension] += 1.0 if code & 0x100 else -1.0
    return [3.0 * value for value in vector]


def dimension_of(model: str, requested: int | None) -> int:
    dimension = requested or DIMENSION
    return dimension - 1 if model == "wrong-dim" else dimension


@dataclass
class FakeEmbeddings:
    api_key: str | None = None

    async def __call__(self, request: Request, exchange: Exchange) -> None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or (
            self.api_key is not None and auth != f"Bearer {self.api_key}"
        ):
            await exchange.send_json(401, {"error": {"message": "Incorrect API key provided"}})
            return
        try:
            body = request.json()
        except ValueError:
            await exchange.send_json(400, {"message": "invalid JSON"})
            return
        model = str(body.get("model", ""))
        failure = failure_of(request, model)
        if failure is Failure.HANG:
            await exchange.hang()
        elif failure is Failure.UNAUTHORIZED:
            await exchange.send_json(401, {"message": "invalid api token"})
        elif failure is Failure.RATE_LIMITED:
            await exchange.send_json(
                429, {"message": "rate limited"}, {"Retry-After": str(RETRY_AFTER_SECONDS)}
            )
        elif failure is Failure.SERVER_ERROR:
            await exchange.send_json(500, {"message": "internal server error"})
        elif failure is Failure.BAD_REQUEST:
            await exchange.send_json(400, {"message": "input is too long"})
        elif failure is Failure.MALFORMED:
            await exchange.send_json(200, {"unexpected": True})
        elif (request.method, request.path) == ("POST", "/v1/embeddings"):
            await self.openai(body, model, exchange)
        elif (request.method, request.path) == ("POST", "/v2/embed"):
            await self.cohere(body, model, exchange)
        else:
            await exchange.send_json(404, {"message": f"Unknown route {request.path}"})

    async def openai(self, body: dict[str, Any], model: str, exchange: Exchange) -> None:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        error = None
        if not isinstance(inputs, list) or not inputs:
            error = "'input' is required"
        elif len(inputs) > OPENAI_MAX_INPUTS:
            error = f"'input' must have at most {OPENAI_MAX_INPUTS} items"
        elif any(not isinstance(text, str) or not text for text in inputs):
            error = "'input' cannot contain an empty string"
        elif body.get("encoding_format", "float") != "float":
            error = "only encoding_format 'float' is supported"
        if error:
            error_body = {"message": error, "type": "invalid_request_error"}
            await exchange.send_json(400, {"error": error_body})
            return
        dimension = dimension_of(model, body.get("dimensions"))
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(text, dimension)}
            for i, text in enumerate(inputs)
        ]
        words = sum(len(text.split()) for text in inputs)
        reply = {
            "object": "list",
            "data": data[::-1],
            "model": model,
            "usage": {"prompt_tokens": words, "total_tokens": words},
        }
        await exchange.send_json(200, reply)

    async def cohere(self, body: dict[str, Any], model: str, exchange: Exchange) -> None:
        texts = body.get("texts")
        error = None
        if body.get("input_type") not in {"search_document", "search_query", "classification"}:
            error = "invalid request: input_type is required"
        elif not isinstance(texts, list) or not texts:
            error = "invalid request: texts is required"
        elif len(texts) > COHERE_MAX_TEXTS:
            error = f"invalid request: texts must have at most {COHERE_MAX_TEXTS} items"
        if error:
            await exchange.send_json(400, {"message": error})
            return
        dimension = dimension_of(model, body.get("output_dimension"))
        types = body.get("embedding_types") or ["float"]
        embeddings = {"float": [fake_vector(text, dimension) for text in texts]}
        reply = {
            "id": "fake-embed",
            "response_type": "embeddings_by_type",
            "embeddings": {kind: embeddings[kind] for kind in types if kind in embeddings},
            "texts": texts,
            "meta": {"billed_units": {"input_tokens": sum(len(t.split()) for t in texts)}},
        }
        await exchange.send_json(200, reply)


class FakeEmbeddingServer(FakeHttpServer):
    @property
    def openai_base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def cohere_base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@asynccontextmanager
async def fake_embedding_server(api_key: str | None = None) -> AsyncIterator[FakeEmbeddingServer]:
    """Run the fake on a free port in this event loop for the duration of the block."""
    server = FakeEmbeddingServer(FakeEmbeddings(api_key))
    await server.start()
    try:
        yield server
    finally:
        await server.close()
