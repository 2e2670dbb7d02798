"""RAGFlow's /api/v1/chats/{chat_id}/completions: cumulative answers, new or given session."""

from __future__ import annotations

import asyncio
import json

from quart import Quart
from quart.testing import QuartClient

from backend.models import ChatSession, Message
from backend.streams.task_stream import TaskStream
from schemas.events import ErrorEvent, TokenEvent
from tests.support.chats import (
    Account,
    answer_next_task,
    create_chat,
    create_session,
    next_task,
)


def data_lines(body: str) -> list:
    lines = [block for block in body.split("\n\n") if block]
    assert all(line.startswith("data:") for line in lines), body
    return [json.loads(line.removeprefix("data:")) for line in lines]


async def test_stream_in_a_session_gives_cumulative_answers(
    app: Quart, client: QuartClient, owner: Account
) -> None:
    chat = await create_chat(client, owner)
    session = await create_session(client, owner, chat["id"])
    request = asyncio.create_task(
        client.post(
            f"/api/v1/chats/{chat['id']}/completions",
            json={"question": "Hello!", "session_id": session["id"]},
            headers=owner.headers,
        )
    )
    task = await answer_next_task(app, owner.id, ["Hi", " there", "!"])
    response = await asyncio.wait_for(request, 10)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    lines = data_lines(await response.get_data(as_text=True))
    assert [line["data"]["answer"] for line in lines[:-1]] == ["Hi", "Hi there", "Hi there!"]
    assert all(line["code"] == 0 for line in lines)
    assert {line["data"]["session_id"] for line in lines[:-1]} == {session["id"]}
    assert {line["data"]["id"] for line in lines[:-1]} == {task.id}
    assert lines[-1] == {"code": 0, "message": "", "data": True}
    question = await Message.get(task_id=task.id)
    assert question.content == [{"type": "text", "text": "Hello!"}]


async def test_without_session_a_new_one_is_started(
    app: Quart, client: QuartClient, owner: Account
) -> None:
    chat = await create_chat(client, owner)
    request = asyncio.create_task(
        client.post(
            f"/api/v1/chats/{chat['id']}/completions",
            json={"question": "What is Sluice?", "stream": False},
            headers=owner.headers,
        )
    )
    await answer_next_task(app, owner.id, ["A", " backend"])
    response = await asyncio.wait_for(request, 10)
    assert response.status_code == 200
    answer = (await response.get_json())["data"]
    assert answer["answer"] == "A backend"
    session = await ChatSession.get(id=answer["session_id"])
    assert session.name == "What is Sluice?"
    assert session.user_id == owner.id


async def test_failures_are_reported_the_ragflow_way(
    app: Quart, client: QuartClient, owner: Account
) -> None:
    chat = await create_chat(client, owner)
    request = asyncio.create_task(
        client.post(
            f"/api/v1/chats/{chat['id']}/completions",
            json={"question": "x"},
            headers=owner.headers,
        )
    )
    task = await next_task(owner.id)
    stream = TaskStream.for_task(app.config["REDIS"], app.config["SETTINGS"], task.id)
    await stream.append(TokenEvent(delta="Par"))
    await stream.append(ErrorEvent(code="provider_timeout", message="The model timed out"))
    lines = data_lines(await (await asyncio.wait_for(request, 10)).get_data(as_text=True))
    assert lines[-2]["code"] == 500
    assert lines[-2]["data"]["answer"] == "**ERROR**: The model timed out"
    assert lines[-1]["data"] is True


async def test_non_stream_failure_is_502(app: Quart, client: QuartClient, owner: Account) -> None:
    chat = await create_chat(client, owner)
    request = asyncio.create_task(
        client.post(
            f"/api/v1/chats/{chat['id']}/completions",
            json={"question": "x", "stream": False},
            headers=owner.headers,
        )
    )
    task = await next_task(owner.id)
    stream = TaskStream.for_task(app.config["REDIS"], app.config["SETTINGS"], task.id)
    await stream.append(ErrorEvent(code="provider_unavailable", message="Upstream is down"))
    response = await asyncio.wait_for(request, 10)
    assert response.status_code == 502
    assert (await response.get_json())["message"] == "Upstream is down"


async def test_auth_permissions_and_malformed_input(
    client: QuartClient, owner: Account, stranger: Account
) -> None:
    chat = await create_chat(client, owner)
    session = await create_session(client, owner, chat["id"])
    url = f"/api/v1/chats/{chat['id']}/completions"
    assert (await client.post(url, json={"question": "x"})).status_code == 401
    hidden = await client.post(url, json={"question": "x"}, headers=stranger.headers)
    assert hidden.status_code == 404
    theirs = await create_chat(client, stranger)
    other_session = await client.post(
        f"/api/v1/chats/{theirs['id']}/completions",
        json={"question": "x", "session_id": session["id"]},
        headers=stranger.headers,
    )
    assert other_session.status_code == 404
    for body in ({}, {"question": ""}, {"question": "x", "stream": "often"}):
        response = await client.post(url, json=body, headers=owner.headers)
        assert response.status_code == 422, body


async def test_route_is_documented(client: QuartClient) -> None:
    paths = (await (await client.get("/openapi.json")).get_json())["paths"]
    assert "post" in paths["/api/v1/chats/{chat_id}/completions"]
