"""Creating, reading and cancelling chat tasks (no worker: tasks stay queued here)."""

from __future__ import annotations

import uuid

import pytest
from arq.constants import job_key_prefix
from quart import Quart
from quart.testing import QuartClient

from backend.constants import task_cancel_key
from backend.models import Assistant, ChatSession, CreditReservation, Message, Task, Upload
from backend.models.credits import ReservationState
from backend.models.tasks import TaskState
from backend.providers.base import ChatMessage
from backend.services import tasks
from backend.settings import Settings
from backend.streams.task_stream import TaskStream
from schemas.events import EventType
from tests.support.accounts import Account, create_account
from tests.support.ledger import assert_ledger_balanced, balance_of
from tests.support.task_models import CHEAP, PRICEY, VISION, test_models  # noqa: F401

pytestmark = pytest.mark.usefixtures("test_models")


async def make_session(account: Account, model: str = CHEAP, **llm) -> ChatSession:
    assistant = await Assistant.create(
        owner_id=account.id,
        name="a",
        llm={"model_name": model, **llm},
        preset_messages=[{"role": "system", "content": "You are terse."}],
    )
    return await ChatSession.create(assistant_id=assistant.id, user_id=account.id)


@pytest.fixture
async def account(settings: Settings) -> Account:
    return await create_account(settings, credits=100, password=False)


@pytest.fixture
async def stranger(settings: Settings) -> Account:
    return await create_account(settings, credits=100, password=False)


async def post_task(client: QuartClient, account: Account, body: dict):
    return await client.post("/api/v1/tasks", json=body, headers=account.headers)


async def test_create_task_records_message_reserves_and_enqueues(
    app: Quart, client: QuartClient, account: Account
) -> None:
    session = await make_session(account)
    response = await post_task(client, account, {"session_id": session.id, "question": "Hi?"})
    assert response.status_code == 201, await response.get_data(as_text=True)
    data = (await response.get_json())["data"]
    assert data["status"] == "queued"
    assert data["session_id"] == session.id
    assert data["model"] == CHEAP

    task = await Task.get(id=data["task_id"])
    message = await Message.get(id=data["user_message_id"])
    assert message.session_id == session.id
    assert message.role == "user"
    assert message.content == [{"type": "text", "text": "Hi?"}]
    assert [m["role"] for m in task.request["messages"]] == ["system", "user"]
    assert task.request["prompt_tokens"] > 0

    reservation = await CreditReservation.get(id=task.reservation_id)
    assert reservation.state == ReservationState.RESERVED
    assert reservation.task_id == task.id
    assert reservation.amount > 0
    assert await balance_of(account.id) == 100 - reservation.amount
    assert await app.config["REDIS"].exists(job_key_prefix + task.id)
    await assert_ledger_balanced()


async def test_max_tokens_of_the_assistant_bounds_the_reservation(
    client: QuartClient, account: Account
) -> None:
    small = await make_session(account, max_tokens=16)
    large = await make_session(account)
    amounts = []
    for session in (small, large):
        response = await post_task(client, account, {"session_id": session.id, "question": "x"})
        assert response.status_code == 201
        task = await Task.get(id=(await response.get_json())["data"]["task_id"])
        amounts.append((await CreditReservation.get(id=task.reservation_id)).amount)
    assert amounts[0] < amounts[1]


async def test_insufficient_credits_is_402_and_records_nothing(
    client: QuartClient, account: Account
) -> None:
    session = await make_session(account, PRICEY)
    response = await post_task(client, account, {"session_id": session.id, "question": "Hi"})
    assert response.status_code == 402
    body = await response.get_json()
    assert body["code"] == 402 and body["message"]
    assert await Message.filter(session_id=session.id).count() == 0
    assert await Task.filter(session_id=session.id).count() == 0
    assert await balance_of(account.id) == 100


async def test_a_turn_that_fails_to_record_holds_no_credits(
    client: QuartClient, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await make_session(account)
    # The task's INSERT, the transaction's last, fails in the database: its id is taken.
    taken = await Task.create(user_id=account.id, model="m")
    monkeypatch.setattr(tasks, "new_id", lambda: taken.id)
    response = await post_task(client, account, {"session_id": session.id, "question": "Hi"})
    assert response.status_code == 500
    monkeypatch.undo()
    # The hold, the ledger entry and the user's message went with the failed transaction.
    assert await CreditReservation.filter(user_id=account.id).count() == 0
    assert await Message.filter(session_id=session.id).count() == 0
    assert await balance_of(account.id) == 100
    await assert_ledger_balanced()


async def test_image_to_a_text_only_model_is_400(client: QuartClient, account: Account) -> None:
    session = await make_session(account)
    body = {
        "session_id": session.id,
        "content": [
            {"type": "text", "text": "What is it?"},
            {"type": "image", "url": "http://x/a.png"},
        ],
    }
    response = await post_task(client, account, body)
    assert response.status_code == 400
    assert "image" in (await response.get_json())["message"]
    assert await Message.filter(session_id=session.id).count() == 0


async def test_image_to_a_vision_model_is_accepted(
    client: QuartClient, account: Account, settings: Settings
) -> None:
    session = await make_session(account, VISION)
    upload = await Upload.create(
        user_id=account.id, content_type="image/png", size=1, path=str(settings.data_dir / "x.png")
    )
    body = {
        "session_id": session.id,
        "content": [{"type": "text", "text": "What?"}, {"type": "image", "upload_id": upload.id}],
    }
    response = await post_task(client, account, body)
    assert response.status_code == 201, await response.get_data(as_text=True)


async def test_someone_elses_upload_is_404(
    client: QuartClient, account: Account, stranger: Account, settings: Settings
) -> None:
    session = await make_session(account, VISION)
    upload = await Upload.create(
        user_id=stranger.id, content_type="image/png", size=1, path=str(settings.data_dir / "y")
    )
    body = {"session_id": session.id, "content": [{"type": "image", "upload_id": upload.id}]}
    response = await post_task(client, account, body)
    assert response.status_code == 404


async def test_another_users_session_is_404(
    client: QuartClient, account: Account, stranger: Account
) -> None:
    session = await make_session(stranger)
    response = await post_task(client, account, {"session_id": session.id, "question": "Hi"})
    assert response.status_code == 404
    unknown = await post_task(client, account, {"session_id": uuid.uuid4().hex, "question": "Hi"})
    assert unknown.status_code == 404


async def test_session_of_an_assistant_no_longer_public_is_404(
    client: QuartClient, account: Account, stranger: Account
) -> None:
    """An administrator unpublished the assistant after the user started chatting."""
    assistant = await Assistant.create(
        owner_id=stranger.id, name="was public", llm={"model_name": CHEAP}, public=True
    )
    session = await ChatSession.create(assistant_id=assistant.id, user_id=account.id)
    body = {"session_id": session.id, "question": "Hi"}
    assert (await post_task(client, account, body)).status_code == 201
    await Assistant.filter(id=assistant.id).update(public=False)
    response = await post_task(client, account, body)
    assert response.status_code == 404
    assert "no longer available" in (await response.get_json())["message"]


async def test_create_task_requires_authentication(client: QuartClient, account: Account) -> None:
    session = await make_session(account)
    body = {"session_id": session.id, "question": "Hi"}
    assert (await client.post("/api/v1/tasks", json=body)).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await client.post("/api/v1/tasks", json=body, headers=bad)).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"question": "no session"},
        {"session_id": "s"},
        {"session_id": "s", "question": "both", "content": [{"type": "text", "text": "x"}]},
        {"session_id": "s", "question": ""},
        {"session_id": "s", "content": []},
        {"session_id": "s", "content": [{"type": "audio", "url": "x"}]},
        {"session_id": "s", "content": [{"type": "image"}]},
        {"session_id": "s", "content": [{"type": "image", "url": "u", "upload_id": "i"}]},
        {"session_id": "s", "question": "x", "stream": "sometimes"},
    ],
)
async def test_malformed_task_is_422(client: QuartClient, account: Account, body: dict) -> None:
    response = await post_task(client, account, body)
    assert response.status_code == 422
    assert (await response.get_json())["message"].startswith("Invalid request")


async def test_non_json_body_is_a_4xx(client: QuartClient, account: Account) -> None:
    response = await client.post(
        "/api/v1/tasks",
        data="not json",
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500


async def test_get_task_reports_status_and_hides_others(
    client: QuartClient, account: Account, stranger: Account
) -> None:
    session = await make_session(account)
    created = await post_task(client, account, {"session_id": session.id, "question": "Hi"})
    task_id = (await created.get_json())["data"]["task_id"]

    response = await client.get(f"/api/v1/tasks/{task_id}", headers=account.headers)
    assert response.status_code == 200
    data = (await response.get_json())["data"]
    assert data["task_id"] == task_id
    assert data["status"] == "queued"
    assert data["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
    assert data["started_at"] is None and data["error"] is None

    assert (
        await client.get(f"/api/v1/tasks/{task_id}", headers=stranger.headers)
    ).status_code == 404
    missing = await client.get(f"/api/v1/tasks/{uuid.uuid4().hex}", headers=account.headers)
    assert missing.status_code == 404
    assert (await client.get(f"/api/v1/tasks/{task_id}")).status_code == 401


async def test_cancel_a_queued_task_ends_it_and_refunds_everything(
    app: Quart, client: QuartClient, account: Account, settings: Settings
) -> None:
    session = await make_session(account)
    created = await post_task(client, account, {"session_id": session.id, "question": "Hi"})
    task_id = (await created.get_json())["data"]["task_id"]
    assert await balance_of(account.id) < 100

    response = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=account.headers)
    assert response.status_code == 200
    data = (await response.get_json())["data"]
    assert data["status"] == "cancelled"
    assert data["cost"] == 0
    assert await balance_of(account.id) == 100
    redis = app.config["REDIS"]
    assert await redis.exists(task_cancel_key(settings.redis_prefix, task_id))
    entries = await TaskStream.for_task(redis, settings, task_id).read_after()
    assert [e.type for e in entries] == [EventType.CANCELLED]

    again = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=account.headers)
    assert again.status_code == 409
    assert await balance_of(account.id) == 100
    await assert_ledger_balanced()


async def test_cancel_a_running_task_only_raises_the_flag(
    app: Quart, client: QuartClient, account: Account, settings: Settings
) -> None:
    session = await make_session(account)
    created = await post_task(client, account, {"session_id": session.id, "question": "Hi"})
    task_id = (await created.get_json())["data"]["task_id"]
    await Task.filter(id=task_id).update(state=TaskState.RUNNING)

    response = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=account.headers)
    assert response.status_code == 200
    assert (await response.get_json())["data"]["status"] == "running"
    assert await app.config["REDIS"].exists(task_cancel_key(settings.redis_prefix, task_id))


async def test_cancel_someone_elses_or_unknown_task_is_404(
    client: QuartClient, account: Account, stranger: Account
) -> None:
    session = await make_session(account)
    created = await post_task(client, account, {"session_id": session.id, "question": "Hi"})
    task_id = (await created.get_json())["data"]["task_id"]
    other = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=stranger.headers)
    assert other.status_code == 404
    missing = await client.post(f"/api/v1/tasks/{uuid.uuid4().hex}/cancel", headers=account.headers)
    assert missing.status_code == 404
    assert (await client.post(f"/api/v1/tasks/{task_id}/cancel")).status_code == 401
    assert (await Task.get(id=task_id)).state == TaskState.QUEUED


async def test_stateless_task_keeps_the_conversation_on_the_task(
    app: Quart, account: Account, settings: Settings
) -> None:
    from backend.models import User

    user = await User.get(id=account.id)
    messages = [
        ChatMessage("user", "Hello"),
        ChatMessage("assistant", "Hi"),
        ChatMessage("user", "?"),
    ]
    task = await tasks.create_stateless_task(
        user, CHEAP, messages, redis=app.config["REDIS"], settings=settings
    )
    assert task.session_id is None and task.user_message_id is None
    assert task.request["messages"][0] == {"role": "user", "content": "Hello"}
    assert await app.config["REDIS"].exists(job_key_prefix + task.id)

    image = [ChatMessage("user", [{"type": "image_url", "image_url": {"url": "data:,"}}])]
    with pytest.raises(tasks.BadRequest):
        await tasks.create_stateless_task(
            user, CHEAP, image, redis=app.config["REDIS"], settings=settings
        )


async def test_task_routes_are_documented(client: QuartClient) -> None:
    paths = (await (await client.get("/openapi.json")).get_json())["paths"]
    assert "post" in paths["/api/v1/tasks"]
    assert "get" in paths["/api/v1/tasks/{task_id}"]
    assert "post" in paths["/api/v1/tasks/{task_id}/cancel"]
    stream = paths["/api/v1/tasks/{task_id}/stream"]["get"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]
