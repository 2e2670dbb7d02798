"""RAGFlow's WebSocket chat protocol (/v1/ws/chat) over a real socket with the
`websockets` client, a real chat worker and the echoing upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from quart import Quart

from backend.models import ChatSession
from backend.settings import Settings
from tests.support.chats import Account, create_account, live_chat_stack
from tests.support.live_server import LiveServer


@pytest.fixture(scope="module")
async def live_chat(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    async with live_chat_stack(settings, tmp_path_factory.mktemp("ragflow-ws")) as server:
        yield server


def ws_url(server: LiveServer) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/ws/chat"


async def new_chat(server: LiveServer, account: Account) -> str:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        response = await http.post("/api/v1/chats", json={"name": "ws"}, headers=account.headers)
        return response.json()["data"]["id"]


async def until_done(socket) -> list[dict]:
    frames = []
    while True:
        frames.append(json.loads(await socket.recv()))
        if frames[-1]["data"] is True:
            return frames


async def test_a_question_and_a_follow_up_in_the_session(live_chat: LiveServer) -> None:
    account = await create_account(live_chat.settings)
    chat = await new_chat(live_chat, account)
    async with websockets.connect(f"{ws_url(live_chat)}?token={account.access_token}") as socket:
        await socket.send(json.dumps({"type": "chat", "chat_id": chat, "question": "a b c"}))
        first = await until_done(socket)
        assert first[-1] == {"code": 0, "message": "", "data": True}
        answers = [f["data"] for f in first[:-1]]
        assert all(f["code"] == 0 for f in first)
        # Each frame carries the new text; the client appends them.
        assert "".join(a["answer"] for a in answers) == "a b c"
        assert len(answers) >= 3
        session_id = answers[0]["session_id"]
        assert {(a["session_id"], a["chat_id"]) for a in answers} == {(session_id, chat)}
        assert {json.dumps(a["reference"]) for a in answers} == {"{}"}
        follow_up = {"type": "chat", "chat_id": chat, "question": "d e", "session_id": session_id}
        await socket.send(json.dumps(follow_up))
        second = await until_done(socket)
    assert "".join(f["data"]["answer"] for f in second[:-1]) == "d e"
    assert {f["data"]["session_id"] for f in second[:-1]} == {session_id}
    session = await ChatSession.get(id=session_id)
    assert session.assistant_id == chat


async def test_the_token_may_come_in_the_authorization_header(live_chat: LiveServer) -> None:
    account = await create_account(live_chat.settings)
    chat = await new_chat(live_chat, account)
    for header in (f"Bearer {account.access_token}", account.access_token):
        headers = {"Authorization": header}
        async with websockets.connect(ws_url(live_chat), additional_headers=headers) as socket:
            await socket.send(json.dumps({"type": "chat", "chat_id": chat, "question": "x y"}))
            frames = await until_done(socket)
        assert "".join(f["data"]["answer"] for f in frames[:-1]) == "x y"


@pytest.mark.parametrize("query", ["", "?token=not-a-token"])
async def test_bad_auth_closes_with_1008(live_chat: LiveServer, query: str) -> None:
    async with websockets.connect(ws_url(live_chat) + query) as socket:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd.code == 1008


async def test_bad_questions_get_error_frames_and_the_socket_carries_on(
    live_chat: LiveServer,
) -> None:
    account = await create_account(live_chat.settings)
    other = await create_account(live_chat.settings)
    foreign = await new_chat(live_chat, other)
    chat = await new_chat(live_chat, account)
    async with websockets.connect(f"{ws_url(live_chat)}?token={account.access_token}") as socket:
        await socket.send("not json")
        assert json.loads(await socket.recv())["code"] == 400
        await socket.send(json.dumps({"type": "chat", "chat_id": chat}))
        invalid = json.loads(await socket.recv())
        assert invalid["code"] == 422 and "question" in invalid["message"]
        assert invalid["data"]["answer"].startswith("**ERROR**: ")
        await socket.send(json.dumps({"type": "chat", "chat_id": foreign, "question": "q"}))
        assert json.loads(await socket.recv())["code"] == 404
        await socket.send(json.dumps({"type": "chat", "chat_id": chat, "question": "ok"}))
        frames = await until_done(socket)
    assert "".join(f["data"]["answer"] for f in frames[:-1]) == "ok"
