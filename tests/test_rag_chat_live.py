"""Answering over knowledge bases end to end, over real sockets: Hypercorn, an ingest
worker (fake embedding upstream), a chat worker and the fake OpenAI upstream.

Upload → parse → an assistant over the dataset → a question answered only by the
document: the `reference` event naming it arrives before the first token, the knowledge
reaches the model, the final reference is stored with the message, and credits are
reserved and settled with the context counted. A question nothing matches is answered
with `empty_response` and no model call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import websockets
from quart import Quart

from backend.models import ChatSession, CreditReservation, Message, Task
from backend.providers.base import ModelSpec
from backend.providers.catalog import DEFAULT_LOCAL_ENTRY, spec_of
from backend.services import knowledge_turns
from backend.services.pricing import price
from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.fake_openai import FakeOpenAIServer, fake_openai_server
from tests.support.ingest_stack import (
    IngestStack,
    account_fixtures,
    ingest_stack,
    parsed_documents,
)
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.live_server import start_chat_worker
from tests.support.sse_client import ask_task

MODEL = "rag-echo"
PROMPT_PRICE, COMPLETION_PRICE = 10, 20
FACT = "The Zorblat gizmo is painted ultramarine and weighs seven kilograms."
OTHER = "Lakes freeze in winter; herons fish along the reeds at dawn."
EMPTY = "Nothing about that in my documents."


def model_entries(base_url: str) -> str:
    """An echoing model (it repeats the question), priced so charges are visible."""
    entry = {
        "id": MODEL,
        "provider": "openai",
        "upstream": "echo",
        "base_url": base_url,
        "context_window": 4096,
        "max_output": 256,
        "prompt_price": PROMPT_PRICE,
        "completion_price": COMPLETION_PRICE,
    }
    return json.dumps([entry])


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[FakeOpenAIServer]:
    async with fake_openai_server() as server:
        yield server


@pytest.fixture(scope="module")
async def stack(
    app: Quart,
    settings: Settings,
    upstream: FakeOpenAIServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[IngestStack]:
    async with ingest_stack(
        settings,
        tmp_path_factory.mktemp("rag-chat-live"),
        models=model_entries(upstream.base_url),
        default_model=MODEL,
        openai_api_key="test-key",
        provider_max_retries=0,
    ) as running:
        running.workers.append(await start_chat_worker(running.settings, running.log_dir))
        yield running


account, client = account_fixtures(credits=10_000, password=False)


async def parsed_dataset(client: httpx.AsyncClient) -> tuple[str, str]:
    """A dataset with two parsed documents: (dataset id, id of the one holding FACT)."""
    created = await client.post("/api/v1/datasets", json={"name": "gizmos"})
    dataset_id = created.json()["data"]["id"]
    files = [("zorblat.txt", FACT.encode()), ("lakes.txt", OTHER.encode())]
    ids = await parsed_documents(client, dataset_id, files)
    return dataset_id, ids[0]


async def assistant_session(client: httpx.AsyncClient, dataset_id: str, **prompt: Any) -> str:
    body = {
        "name": f"kb-{len(prompt)}-{id(prompt)}",
        "dataset_ids": [dataset_id],
        "llm": {"model_name": MODEL},
        "prompt": {"empty_response": EMPTY, "similarity_threshold": 0.3, **prompt},
    }
    chat = await client.post("/api/v1/chats", json=body)
    assert chat.status_code == 201, chat.text
    chat_id = chat.json()["data"]["id"]
    session = await client.post(f"/api/v1/chats/{chat_id}/sessions", json={"name": "s"})
    return session.json()["data"]["id"]


def chat_requests(upstream: FakeOpenAIServer) -> list[dict[str, Any]]:
    return [r.json() for r in upstream.stats.requests if r.path == "/v1/chat/completions"]


async def test_an_answer_streams_after_a_reference_naming_the_document(
    client: httpx.AsyncClient, account: Account, upstream: FakeOpenAIServer
) -> None:
    dataset_id, document_id = await parsed_dataset(client)
    session_id = await assistant_session(client, dataset_id)
    calls = len(chat_requests(upstream))

    frames = await ask_task(client, session_id, "What colour is the Zorblat gizmo painted?")

    kinds = [frame.event for frame in frames]
    assert kinds[0] == "reference" and kinds[-2:] == ["usage", "done"], kinds
    assert set(kinds[1:-2]) == {"token"}
    reference = frames[0].data
    assert reference["chunks"][0]["document_id"] == document_id
    assert reference["chunks"][0]["document_name"] == "zorblat.txt"
    assert reference["chunks"][0]["dataset_id"] == dataset_id
    assert "ultramarine" in reference["chunks"][0]["content"]
    assert {"similarity", "vector_similarity", "term_similarity", "positions"} <= set(
        reference["chunks"][0]
    )
    assert reference["doc_aggs"][0]["doc_name"] == "zorblat.txt"

    # The model was called once, with the document's text in its system message.
    sent = chat_requests(upstream)[calls:]
    assert len(sent) == 1
    system = sent[0]["messages"][0]
    assert system["role"] == "system" and FACT in system["content"]
    assert "[ID:0]" in system["content"]

    done = frames[-1].data
    assert done["reference"]["chunks"] == reference["chunks"]
    stored = await Message.get(id=done["message_id"])
    assert stored.reference["chunks"][0]["document_id"] == document_id
    # The session's history shows the answer's sources.
    chat_id = (await Task.get(id=stored.task_id).prefetch_related("session")).session.assistant_id
    history = await client.get(f"/api/v1/chats/{chat_id}/sessions/{session_id}/messages")
    answer = [m for m in history.json()["data"]["items"] if m["id"] == done["message_id"]]
    assert answer[0]["reference"]["doc_aggs"][0]["doc_id"] == document_id

    # Credits: the retrieved context is part of the prompt that was charged.
    task = await Task.get(id=stored.task_id)
    spec = ModelSpec(
        id=MODEL, provider="openai", upstream="echo",
        prompt_price=PROMPT_PRICE, completion_price=COMPLETION_PRICE,
    )  # fmt: skip
    fact_words = len(FACT.split())
    assert task.prompt_tokens == done["prompt_tokens"] > fact_words
    assert done["cost"] == price(spec, done["prompt_tokens"], done["completion_tokens"]) > 0
    hold = await CreditReservation.get(id=task.reservation_id)
    assert hold.amount >= price(spec, task.request["prompt_tokens"] + fact_words, 256)
    assert await balance_of(account.id) == 10_000 - done["cost"]
    await assert_ledger_balanced()


async def test_nothing_found_answers_the_empty_response_without_the_model(
    client: httpx.AsyncClient, account: Account, upstream: FakeOpenAIServer
) -> None:
    dataset_id, _ = await parsed_dataset(client)
    session_id = await assistant_session(client, dataset_id)
    calls = len(chat_requests(upstream))
    before = await balance_of(account.id)

    frames = await ask_task(client, session_id, "Quantum chromodynamics lattice gauge?")

    assert [f.event for f in frames] == ["reference", "token", "usage", "done"]
    assert frames[0].data["chunks"] == []
    assert frames[1].data["delta"] == EMPTY
    done = frames[-1].data
    assert (done["prompt_tokens"], done["completion_tokens"], done["cost"]) == (0, 0, 0)
    assert len(chat_requests(upstream)) == calls
    assert (await Message.get(id=done["message_id"])).content[0]["text"] == EMPTY
    assert await balance_of(account.id) == before
    await assert_ledger_balanced()


async def test_show_quote_off_sends_no_reference(
    client: httpx.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    dataset_id, _ = await parsed_dataset(client)
    session_id = await assistant_session(client, dataset_id, show_quote=False)

    frames = await ask_task(client, session_id, "How much does the Zorblat gizmo weigh?")

    assert "reference" not in [f.event for f in frames]
    done = frames[-1].data
    assert done["reference"] is None
    assert FACT in chat_requests(upstream)[-1]["messages"][0]["content"]
    assert (await Message.get(id=done["message_id"])).reference is None


async def test_the_websocket_send_delivers_the_reference_before_the_answer(
    client: httpx.AsyncClient, account: Account, stack: IngestStack
) -> None:
    dataset_id, document_id = await parsed_dataset(client)
    session_id = await assistant_session(client, dataset_id)
    url = f"{stack.server.ws_url}?access_token={account.access_token}"
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        send = {"type": "send", "session_id": session_id, "content": "Zorblat gizmo colour?"}
        await ws.send(json.dumps(send))
        subscribed = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert subscribed["type"] == "subscribed"
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["type"] not in ("done", "error", "cancelled"):
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "reference" and kinds[-1] == "done" and "token" in kinds, kinds
    assert messages[0]["chunks"][0]["document_id"] == document_id
    assert messages[0]["task_id"] == subscribed["task_id"]
    assert messages[-1]["reference"]["doc_aggs"][0]["doc_name"] == "zorblat.txt"


async def test_a_follow_up_is_rewritten_for_retrieval_and_the_rewrite_charged(
    client: httpx.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    dataset_id, _ = await parsed_dataset(client)
    session_id = await assistant_session(client, dataset_id)
    await ask_task(client, session_id, "Tell me about the Zorblat gizmo.")
    calls = len(chat_requests(upstream))

    frames = await ask_task(client, session_id, "How much does it weigh?")

    rewrite, answer = chat_requests(upstream)[calls:]
    assert rewrite["messages"][0]["content"].startswith("Rewrite the user's latest question")
    assert "Tell me about the Zorblat gizmo." in rewrite["messages"][1]["content"]
    assert FACT in answer["messages"][0]["content"]
    done = frames[-1].data
    # The echo's rewrite repeats its whole user message: those words are charged too.
    rewrite_words = len(rewrite["messages"][1]["content"].split())
    assert done["completion_tokens"] >= rewrite_words


@pytest.mark.parametrize("base", ["/api/v1/openai/{chat}", "/api/v1/chats_openai/{chat}", "/v1"])
async def test_the_openai_sdk_gets_the_reference_in_the_final_chunk(
    client: httpx.AsyncClient, account: Account, stack: IngestStack, upstream: FakeOpenAIServer,
    base: str,
) -> None:  # fmt: skip
    """The session-less OpenAI-compatible turn on an assistant over datasets retrieves
    from them like a session turn: knowledge in the prompt, reference in the last chunk."""
    dataset_id, document_id = await parsed_dataset(client)
    session_id = await assistant_session(client, dataset_id)
    chat_id = (await ChatSession.get(id=session_id)).assistant_id
    sdk = openai.AsyncOpenAI(
        api_key=account.access_token,
        base_url=stack.base_url + base.format(chat=chat_id),
        max_retries=0,
    )
    calls = len(chat_requests(upstream))

    stream = await sdk.chat.completions.create(
        model=chat_id if base == "/v1" else "model",
        messages=[{"role": "user", "content": "What colour is the Zorblat gizmo painted?"}],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]

    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop" and final.usage.prompt_tokens > 0
    reference = final.choices[0].delta.model_extra["reference"]
    assert reference[0]["document_id"] == document_id
    assert reference[0]["document_name"] == "zorblat.txt"
    assert all(c.choices[0].delta.model_extra.get("reference") is None for c in chunks[:-1])
    sent = chat_requests(upstream)[calls:]
    assert len(sent) == 1 and FACT in sent[0]["messages"][0]["content"]
    task = await Task.get(id=final.id.removeprefix("chatcmpl-"))
    assert task.session_id is None and task.request["knowledge"]["assistant_id"] == chat_id


async def test_an_answer_that_cites_nothing_gets_citations_inserted_after_generation(
    client: httpx.AsyncClient, account: Account
) -> None:
    """The echoing model never writes `[ID:n]`: each sentence is matched to the chunk
    that says it, and the stored message, `done` and the final reference carry that."""
    dataset_id, document_id = await parsed_dataset(client)
    session_id = await assistant_session(client, dataset_id)
    question = f"{FACT} Herons fish along the reeds at dawn."

    frames = await ask_task(client, session_id, question)

    given = frames[0].data["chunks"]
    index = {c["content"].strip(): n for n, c in enumerate(given)}
    streamed = "".join(f.data["delta"] for f in frames if f.event == "token")
    assert streamed == question
    expected = f"{FACT} [ID:{index[FACT]}] Herons fish along the reeds at dawn. [ID:{index[OTHER]}]"
    done = frames[-1].data
    assert done["answer"] == expected
    stored = await Message.get(id=done["message_id"])
    assert stored.content == [{"type": "text", "text": expected}]
    cited_documents = {agg["doc_id"] for agg in done["reference"]["doc_aggs"]}
    assert document_id in cited_documents and len(cited_documents) == 2


async def test_an_answer_unrelated_to_the_chunks_gets_no_citation(
    client: httpx.AsyncClient, account: Account
) -> None:
    dataset_id, _ = await parsed_dataset(client)
    session_id = await assistant_session(client, dataset_id)
    # Retrieved by "Zorblat" (too short a sentence to cite), but no sentence of the
    # answer says what a chunk says.
    question = "Zorblat? Our violin teacher practised every evening before concerts."
    frames = await ask_task(client, session_id, question)
    done = frames[-1].data
    assert frames[0].event == "reference" and frames[0].data["chunks"]
    assert done.get("answer") is None
    stored = await Message.get(id=done["message_id"])
    assert stored.content == [{"type": "text", "text": question}]


def test_the_local_default_model_does_not_rewrite() -> None:
    assert not knowledge_turns.can_rewrite(default_model_spec())


def default_model_spec() -> ModelSpec:
    return spec_of(DEFAULT_LOCAL_ENTRY)
