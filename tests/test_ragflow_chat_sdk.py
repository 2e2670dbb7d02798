"""RAGFlow's own Python SDK (`ragflow_sdk`) asking a chat assistant over a real socket,
unchanged: sessions it creates, streamed and whole answers, and answers in a new session
that the completions route starts itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from quart import Quart

from backend.models import ChatSession, Message
from backend.settings import Settings
from tests.support.chats import create_account, live_chat_stack
from tests.support.live_server import LiveServer

ragflow_sdk = pytest.importorskip("ragflow_sdk")


@pytest.fixture(scope="module")
async def live_chat(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    async with live_chat_stack(settings, tmp_path_factory.mktemp("ragflow-chat")) as server:
        yield server


def converse(base_url: str, token: str) -> dict:
    """What a RAGFlow client does with an assistant, through the SDK (blocking)."""
    rag = ragflow_sdk.RAGFlow(api_key=token, base_url=base_url)
    chat = rag.create_chat(name="sdk-chat")
    session = chat.create_session(name="first")
    streamed = [message.content for message in session.ask("echo these words", stream=True)]
    whole = list(session.ask("now these", stream=False))
    return {
        "chat_id": chat.id,
        "session_id": session.id,
        "session_chat_id": session.chat_id,
        "streamed": streamed,
        "whole": [(m.content, m.reference) for m in whole],
        "listed": [s.id for s in chat.list_sessions()],
    }


async def test_the_ragflow_sdk_asks_in_a_session(live_chat: LiveServer) -> None:
    account = await create_account(live_chat.settings)
    seen = await asyncio.to_thread(converse, live_chat.base_url, account.access_token)
    assert seen["session_chat_id"] == seen["chat_id"]
    # Cumulative answers, as RAGFlow's /chats/{id}/completions streams them.
    assert seen["streamed"][-1] == "echo these words"
    assert seen["streamed"] == sorted(seen["streamed"], key=len)
    assert len(seen["streamed"]) >= 3
    assert seen["whole"] == [("now these", None)]
    assert seen["listed"] == [seen["session_id"]]
    stored = await Message.filter(session_id=seen["session_id"]).order_by("created_at", "id")
    texts = [part["text"] for m in stored for part in m.content if part.get("type") == "text"]
    # After the assistant's opener: each question, then its stored answer.
    assert texts[-4:] == ["echo these words", "echo these words", "now these", "now these"]


async def test_without_a_session_the_route_starts_one(live_chat: LiveServer) -> None:
    account = await create_account(live_chat.settings)
    async with httpx.AsyncClient(base_url=live_chat.base_url, timeout=30) as http:
        chat = (
            await http.post("/api/v1/chats", json={"name": "c"}, headers=account.headers)
        ).json()["data"]
        response = await http.post(
            f"/api/v1/chats/{chat['id']}/completions",
            json={"question": "hello there", "stream": False},
            headers=account.headers,
        )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["answer"], data["reference"], data["chat_id"]) == ("hello there", {}, chat["id"])
    session = await ChatSession.get(id=data["session_id"])
    assert (session.assistant_id, session.name) == (chat["id"], "hello there")
