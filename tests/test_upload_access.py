"""Upload access: another user's upload is 404 however a message names it, a stored
message names uploads in one form only, and the worker inlines only the task user's own."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import websockets
from quart.testing import QuartClient

from backend.models import ChatSession, Message, Task, User
from backend.providers.base import Capability
from backend.providers.registry import get_model
from backend.services import tasks
from backend.services.context import build_context
from backend.services.upload_access import MISSING_IMAGE
from backend.services.uploads import save_upload
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.images import image_bytes
from tests.support.live_server import LiveServer, create_chat_session
from tests.support.task_models import VISION, test_models  # noqa: F401
from tests.test_tasks import make_session
from tests.test_worker_chat import configured, ctx, fakes  # noqa: F401
from tests.test_ws import receive
from workers.jobs.chat import generate_answer


def references(upload_id: str) -> list[dict[str, Any]]:
    """Every way an image part can name an upload on the wire."""
    return [
        {"type": "image", "upload_id": upload_id},
        {"type": "image", "url": f"upload:{upload_id}"},
        {"type": "image", "url": f"UPLOAD:{upload_id}"},
        {"type": "image", "url": f"  Upload:{upload_id} "},
    ]


async def foreign_upload(settings: Settings) -> tuple[str, bytes]:
    """A private upload of a third user, and its bytes."""
    stranger = await create_account(settings, password=False)
    data = image_bytes("PNG", (9, 7))
    upload, _ = await save_upload(await User.get(id=stranger.id), data, settings)
    return upload.id, data


@pytest.fixture
async def sender(settings: Settings) -> Account:
    return await create_account(settings, credits=100, password=False)


@pytest.mark.usefixtures("test_models")
async def test_another_users_upload_is_404_on_every_route_in_every_form(
    client: QuartClient, sender: Account, settings: Settings
) -> None:
    upload_id, _ = await foreign_upload(settings)
    session = await make_session(sender, VISION)
    messages = f"/api/v1/chats/{session.assistant_id}/sessions/{session.id}/messages"
    for part in references(upload_id):
        content = [{"type": "text", "text": "What is this?"}, part]
        for url, body in [
            (messages, {"content": content}),
            (messages, {"content": content, "role": "assistant", "visible": False}),
            (messages, {"content": content, "stream": True}),
            ("/api/v1/tasks", {"session_id": session.id, "content": content}),
            ("/api/v1/tasks", {"session_id": session.id, "content": content, "stream": True}),
        ]:
            response = await client.post(url, json=body, headers=sender.headers)
            assert response.status_code == 404, (part, url, await response.get_data(as_text=True))
            assert upload_id in (await response.get_json())["message"]
    assert await Message.filter(session_id=session.id).count() == 0
    assert await Task.filter(user_id=sender.id).count() == 0


async def test_another_users_upload_is_404_over_the_websocket(
    live_processes: LiveServer, live_user: Account, live_settings: Settings
) -> None:
    upload_id, _ = await foreign_upload(live_settings)
    session = await create_chat_session(live_user, VISION)
    url = f"{live_processes.ws_url}?access_token={live_user.access_token}"
    async with websockets.connect(url) as ws:
        assert (await receive(ws))["type"] == "ready"
        for index, part in enumerate(references(upload_id)):
            send = {"type": "send", "session_id": session.id, "content": [part]}
            await ws.send(json.dumps(send | {"ref": f"r{index}"}))
            reply = await receive(ws)
            assert (reply["type"], reply["code"], reply["ref"]) == ("error", 404, f"r{index}")
    assert await Task.filter(user_id=live_user.id).count() == 0


async def test_an_own_upload_url_is_stored_as_its_id(
    client: QuartClient, sender: Account, settings: Settings
) -> None:
    upload, _ = await save_upload(await User.get(id=sender.id), image_bytes(), settings)
    session = await make_session(sender, VISION)
    url = f"/api/v1/chats/{session.assistant_id}/sessions/{session.id}/messages"
    for part in references(upload.id):
        response = await client.post(url, json={"content": [part]}, headers=sender.headers)
        assert response.status_code == 201, await response.get_data(as_text=True)
    stored = await Message.filter(session_id=session.id)
    assert [message.content for message in stored] == [
        [{"type": "image", "upload_id": upload.id}]
    ] * len(references(upload.id))


@pytest.mark.usefixtures("test_models")
async def test_a_stored_reference_to_a_foreign_upload_reaches_the_model_as_a_note(
    sender: Account, settings: Settings
) -> None:
    """History written before references were checked, or by hand, names no one's upload."""
    upload_id, _ = await foreign_upload(settings)
    session = await make_session(sender, VISION)
    for part in references(upload_id):
        await Message.create(session_id=session.id, role="user", content=[part])
    spec = get_model(VISION)
    assert Capability.VISION in spec.capabilities
    session = await ChatSession.get(id=session.id).select_related("assistant")
    sent = await build_context(session, session.assistant, spec)
    images = [part for message in sent[1:] for part in message.content]
    assert images and all(part == {"type": "text", "text": MISSING_IMAGE} for part in images)


async def test_the_worker_inlines_only_the_task_users_uploads(
    ctx: dict[str, Any],  # noqa: F811
    sender: Account,
    settings: Settings,
    fakes: tuple[FakeOpenAIServer, FakeOpenAIServer],  # noqa: F811
) -> None:
    """A task row forged to name someone else's upload sends a note, never its bytes."""
    foreign_id, foreign_bytes = await foreign_upload(settings)
    own_bytes = image_bytes("PNG", (5, 3))
    own, _ = await save_upload(await User.get(id=sender.id), own_bytes, settings)
    session = await make_session(sender, VISION)
    task = await tasks.create_task(
        await User.get(id=sender.id),
        session.id,
        [{"type": "text", "text": "What colour?"}],
        redis=ctx["redis"],
        settings=ctx["settings"],
    )
    forged = [
        {"type": "image_url", "image_url": {"url": f"upload:{own.id}"}},
        {"type": "image_url", "image_url": {"url": f"upload:{foreign_id}"}},
        {"type": "image_url", "image_url": {"url": f" UPLOAD:{foreign_id}"}},
        {"type": "image", "upload_id": foreign_id},
    ]
    task.request["messages"][-1]["content"] = forged
    await task.save(update_fields=["request"])

    assert await generate_answer(ctx, task.id) == "succeeded"
    fast, _ = fakes
    sent = fast.stats.requests[-1].json()["messages"][-1]["content"]
    own_url = f"data:image/png;base64,{base64.b64encode(own_bytes).decode()}"
    assert sent[0] == {"type": "image_url", "image_url": {"url": own_url}}
    assert sent[1:] == [{"type": "text", "text": MISSING_IMAGE}] * 3
    assert base64.b64encode(foreign_bytes).decode() not in json.dumps(sent)
