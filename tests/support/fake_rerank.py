"""A fake rerank upstream speaking both real wire contracts, over a real socket.

- Cohere v2 `POST /v2/rerank` (what the `cohere` SDK's `rerank` sends): `model`,
  `query`, `documents` (strings), `top_n`; answers `{id, results: [{index,
  relevance_score}], meta}`, best first. A bearer token is required.
- The common `POST /v1/rerank` of Jina, Xinference and vLLM: `model`, `query`,
  `documents`, `top_n`; answers `{model, results: [{index, relevance_score, document}],
  usage}`, best first. A bearer token is required only when the fake has an api_key.

Scores are deterministic and differ from the search's own ranking on purpose: with model
`prefer-<word>` a document containing <word> scores 0.9 and any other
0.5 * (share of the query's words it contains), so a test can tell a reranked order from
the fused one and check that each score replaced the similarity. Other models score by
word share alone. Failures are scripted like the other fakes: model `fail-<mode>` or
header `X-Fake-Failure` (400, 401, 429, 500, hang, malformed).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.fake_http import Exchange, Failure, FakeHttpServer, Request, failure_of

PREFERRED = 0.9


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def relevance(model: str, query: str, document: str) -> float:
    wanted = words(query)
    share = len(wanted & words(document)) / len(wanted) if wanted else 0.0
    if model.startswith("prefer-"):
        return PREFERRED if model.removeprefix("prefer-") in words(document) else 0.5 * share
    return share


@dataclass
class FakeRerank:
    api_key: str | None = None

    async def __call__(self, request: Request, exchange: Exchange) -> None:
        cohere = request.path == "/v2/rerank"
        auth = request.headers.get("authorization", "")
        needs_key = cohere or self.api_key is not None
        if needs_key and (
            not auth.startswith("Bearer ")
            or (self.api_key is not None and auth != f"Bearer {self.api_key}")
        ):
            await exchange.send_json(401, {"message": "invalid api token"})
            return
        if request.method != "POST" or request.path not in ("/v2/rerank", "/v1/rerank"):
            await exchange.send_json(404, {"message": f"Unknown route {request.path}"})
            return
        try:
            body = request.json()
            model, query, documents = body["model"], body["query"], body["documents"]
            assert isinstance(query, str) and isinstance(documents, list) and documents
            assert all(isinstance(d, str) for d in documents)
        except (ValueError, KeyError, TypeError, AssertionError):
            await exchange.send_json(
                400, {"message": "invalid request: model, query and documents are required"}
            )
            return
        failure = failure_of(request, str(model))
        if failure is Failure.HANG:
            await exchange.hang()
        elif failure is Failure.UNAUTHORIZED:
            await exchange.send_json(401, {"message": "invalid api token"})
        elif failure is Failure.RATE_LIMITED:
            await exchange.send_json(429, {"message": "rate limited"}, {"Retry-After": "7"})
        elif failure is Failure.SERVER_ERROR:
            await exchange.send_json(500, {"message": "internal server error"})
        elif failure is Failure.BAD_REQUEST:
            await exchange.send_json(400, {"message": "too many documents"})
        elif failure is Failure.MALFORMED:
            await exchange.send_json(200, {"results": [{"index": len(documents) + 5}]})
        else:
            await exchange.send_json(200, self.answer(cohere, body, model, query, documents))

    @staticmethod
    def answer(
        cohere: bool, body: dict[str, Any], model: str, query: str, documents: list[str]
    ) -> dict[str, Any]:
        scored = sorted(
            ((index, relevance(model, query, text)) for index, text in enumerate(documents)),
            key=lambda pair: -pair[1],
        )
        top_n = body.get("top_n") or len(documents)
        scored = scored[:top_n]
        if cohere:
            results = [{"index": i, "relevance_score": s} for i, s in scored]
            return {
                "id": "fake-rerank",
                "results": results,
                "meta": {"billed_units": {"search_units": 1}},
            }
        results = [
            {"index": i, "relevance_score": s, "document": {"text": documents[i]}}
            for i, s in scored
        ]
        tokens = sum(len(d.split()) for d in documents)
        return {"model": model, "results": results, "usage": {"total_tokens": tokens}}


class FakeRerankServer(FakeHttpServer):
    @property
    def cohere_base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def http_base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


@asynccontextmanager
async def fake_rerank_server(api_key: str | None = None) -> AsyncIterator[FakeRerankServer]:
    server = FakeRerankServer(FakeRerank(api_key))
    await server.start()
    try:
        yield server
    finally:
        await server.close()
