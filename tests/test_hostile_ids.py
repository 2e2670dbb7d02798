"""Ids and page numbers that cannot name anything are refused at the edge, never a 500.

Path ids (`<id:...>`, `<user_id:...>`) that cannot exist answer 404 like unknown ids;
ids in bodies and `?id=` filters, and page numbers, answer 422. Every route with a path
argument is found by walking the URL map, so a new route is covered (or this fails).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any
from urllib.parse import quote

import pytest
import websockets
from quart import Quart
from quart.testing import QuartClient
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
)
from werkzeug.routing import Rule

from backend.http.path_ids import CodeConverter, PublicIdConverter, UserIdConverter
from schemas.common import MAX_PAGE, Pagination
from schemas.ids import USER_ID_MAX
from tests.support.accounts import Account
from tests.support.live_server import LiveServer

HUGE = "9223372036854775807"
TWENTY_DIGITS = "9" * 20

BAD_PUBLIC_IDS = [
    "a" * 40,
    "a" * 33,
    "0123456789ABCDEF0123456789ABCDEF",
    "not-an-id",
    "\x00",
    TWENTY_DIGITS,
    "x" * 2000,
]
BAD_USER_IDS = [HUGE, TWENTY_DIGITS, str(USER_ID_MAX + 1), "0"]
# Codes and other path arguments (platforms) get hostile strings too.
BAD_OTHER = ["a" * 40, "x" * 65, "x" * 2000, "\x00", "bad code"]
# Arguments that name a row: what cannot name one must be a 404 like what names nothing.
ROW_CONVERTERS = (PublicIdConverter, UserIdConverter, CodeConverter)

# A valid body for each route that takes one, so the request reaches the id lookup.
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/api/v1/chats/<id:chat_id>"): {"description": "x"},
    ("POST", "/api/v1/chats/<id:chat_id>/sessions"): {"name": "x"},
    ("PUT", "/api/v1/chats/<id:chat_id>/sessions/<id:session_id>"): {"name": "x"},
    ("DELETE", "/api/v1/chats/<id:chat_id>/sessions"): {"ids": [uuid.uuid4().hex]},
    ("POST", "/api/v1/chats/<id:chat_id>/sessions/<id:session_id>/messages"): {"content": "hi"},
    ("POST", "/api/v1/chats/<id:chat_id>/completions"): {"question": "hi", "stream": False},
    ("POST", "/api/v1/openai/<id:chat_id>/chat/completions"): {
        "model": "model",
        "messages": [{"role": "user", "content": "hi"}],
    },
    ("POST", "/api/v1/chats_openai/<id:chat_id>/chat/completions"): {
        "model": "model",
        "messages": [{"role": "user", "content": "hi"}],
    },
    ("PATCH", "/api/v1/users/<user_id:user_id>"): {"level": 0},
    ("POST", "/api/v1/users/<user_id:user_id>/credits"): {"delta": 1, "reason": "test"},
    ("PUT", "/api/v1/app-versions/<platform>"): {"version": "1.0.0"},
    ("PUT", "/api/v1/datasets/<id:dataset_id>"): {"description": "x"},
    # Multipart, read only after the dataset is found.
    ("POST", "/api/v1/datasets/<id:dataset_id>/documents"): None,
    ("PUT", "/api/v1/datasets/<id:dataset_id>/documents/<id:document_id>"): {"name": "x.txt"},
    ("PATCH", "/api/v1/datasets/<id:dataset_id>/documents/<id:document_id>"): {"name": "x.txt"},
    ("DELETE", "/api/v1/datasets/<id:dataset_id>/documents"): {"ids": [uuid.uuid4().hex]},
    ("POST", "/api/v1/datasets/<id:dataset_id>/documents/status"): {"ids": [uuid.uuid4().hex]},
    ("POST", "/api/v1/datasets/<id:dataset_id>/chunks"): {"document_ids": [uuid.uuid4().hex]},
    ("DELETE", "/api/v1/datasets/<id:dataset_id>/chunks"): {"document_ids": [uuid.uuid4().hex]},
    ("POST", "/api/v1/datasets/<id:dataset_id>/faqs"): {"faqs": [{"question": "q", "answer": "a"}]},
    ("POST", "/api/v1/datasets/<id:dataset_id>/documents/<id:document_id>/chunks"): {
        "content": "x"
    },
    ("DELETE", "/api/v1/datasets/<id:dataset_id>/documents/<id:document_id>/chunks"): {
        "chunk_ids": [uuid.uuid4().hex]
    },
    ("PUT", "/api/v1/datasets/<id:dataset_id>/documents/<id:document_id>/chunks/<id:chunk_id>"): {
        "content": "x"
    },
    (
        "PATCH",
        "/api/v1/datasets/<id:dataset_id>/documents/<id:document_id>/chunks/<id:chunk_id>",
    ): {"content": "x"},
}


async def test_every_route_with_a_body_and_a_path_id_has_a_valid_body_here(app: Quart) -> None:
    """Without a valid body such a route answers 422 before its ids are looked up."""
    missing = [
        f"{method} {rule.rule}"
        for rule, method in path_routes(app)
        if getattr(app.view_functions[rule.endpoint], QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
        and (method, rule.rule) not in BODIES
    ]
    assert missing == [], "add a valid body for these routes to BODIES"


def path_routes(app: Quart) -> list[tuple[Rule, str]]:
    """Every (rule, method) of the HTTP API with a path argument."""
    return sorted(
        (
            (rule, method)
            for rule in app.url_map.iter_rules()
            if rule.arguments and not rule.websocket and rule.endpoint != "static"
            for method in rule.methods or ()
            if method not in ("HEAD", "OPTIONS")
        ),
        key=lambda pair: (pair[0].rule, pair[1]),
    )


def hostile_values(rule: Rule, name: str) -> list[str]:
    converter = rule._converters[name]
    if isinstance(converter, UserIdConverter):
        return BAD_USER_IDS
    if isinstance(converter, PublicIdConverter):
        return BAD_PUBLIC_IDS
    return BAD_OTHER


def well_formed(rule: Rule, name: str) -> str:
    """A value of the right shape that names nothing."""
    converter = rule._converters[name]
    if isinstance(converter, UserIdConverter):
        return str(USER_ID_MAX)
    if isinstance(converter, PublicIdConverter):
        return uuid.uuid4().hex
    return "nothing-here"


def build_path(rule: Rule, values: dict[str, str]) -> str:
    return re.sub(
        r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: quote(values[m.group(1)], safe=""), rule.rule
    )


async def call(client: QuartClient, method: str, path: str, account: Account, body: Any):
    kwargs: dict[str, Any] = {"headers": account.headers}
    if body is not None:
        kwargs["json"] = body
    return await client.open(path, method=method, **kwargs)


async def test_every_path_id_is_declared_with_an_id_converter(app: Quart) -> None:
    """A bare `<chat_id>` would let a 40-character id reach SQL again."""
    undeclared = [
        f"{rule.rule} ({name})"
        for rule, _ in path_routes(app)
        for name in rule.arguments
        if (name.endswith("_id") or name == "code")
        and not isinstance(rule._converters[name], ROW_CONVERTERS)
    ]
    assert undeclared == []


async def test_hostile_path_arguments_on_every_route_are_never_a_500(
    app: Quart, client: QuartClient, root: Account
) -> None:
    routes = path_routes(app)
    assert len(routes) >= 20, "the URL map walk found too few routes"
    failures = []
    for rule, method in routes:
        body = BODIES.get((method, rule.rule))
        for name in rule.arguments:
            is_id = isinstance(rule._converters[name], ROW_CONVERTERS)
            for bad in hostile_values(rule, name):
                values = {other: well_formed(rule, other) for other in rule.arguments}
                values[name] = bad
                path = build_path(rule, values)
                response = await call(client, method, path, root, body)
                payload = await response.get_json()
                expected = response.status_code == 404 if is_id else response.status_code < 500
                if not expected or payload["code"] != response.status_code:
                    failures.append((method, path[:120], response.status_code, payload))
    assert failures == []


async def test_malformed_path_ids_answer_like_unknown_ones(
    app: Quart, client: QuartClient, root: Account
) -> None:
    """Same status and envelope whether the id is malformed or merely names nothing."""
    checked = 0
    for rule, method in path_routes(app):
        if not all(isinstance(rule._converters[n], ROW_CONVERTERS) for n in rule.arguments):
            continue
        checked += 1
        body = BODIES.get((method, rule.rule))
        unknown = {name: well_formed(rule, name) for name in rule.arguments}
        known_missing = await call(client, method, build_path(rule, unknown), root, body)
        malformed = {name: hostile_values(rule, name)[0] for name in rule.arguments}
        bad = await call(client, method, build_path(rule, malformed), root, body)
        assert (known_missing.status_code, bad.status_code) == (404, 404), (method, rule.rule)
        assert set(await bad.get_json()) == set(await known_missing.get_json())
    assert checked >= 20


async def test_malformed_path_id_message_says_what_an_id_is(
    client: QuartClient, root: Account
) -> None:
    response = await client.get(f"/api/v1/tasks/{'a' * 40}", headers=root.headers)
    assert response.status_code == 404
    assert "32 lowercase hexadecimal" in (await response.get_json())["message"]


async def test_openapi_documents_the_id_formats(client: QuartClient) -> None:
    paths = (await (await client.get("/openapi.json")).get_json())["paths"]
    task = paths["/api/v1/tasks/{task_id}"]["get"]["parameters"]
    assert task[0]["schema"]["pattern"] == "^[0-9a-f]{32}$"
    user = paths["/api/v1/users/{user_id}"]["get"]["parameters"]
    assert user[0]["schema"]["maximum"] == USER_ID_MAX


async def create_chat(client: QuartClient, account: Account) -> str:
    response = await client.post("/api/v1/chats", json={"name": "c"}, headers=account.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["data"]["id"]


@pytest.mark.parametrize("bad", ["a" * 40, "a" * 33, "ABCDEF0123456789ABCDEF0123456789", "x"])
async def test_malformed_ids_in_bodies_and_filters_are_422(
    client: QuartClient, user: Account, bad: str
) -> None:
    chat = await create_chat(client, user)
    created = await client.post(f"/api/v1/chats/{chat}/sessions", json={}, headers=user.headers)
    session = (await created.get_json())["data"]["id"]
    messages = f"/api/v1/chats/{chat}/sessions/{session}/messages"
    requests: list[tuple[str, str, Any]] = [
        ("DELETE", "/api/v1/chats", {"ids": [bad]}),
        ("DELETE", f"/api/v1/chats/{chat}/sessions", {"ids": [uuid.uuid4().hex, bad]}),
        ("GET", f"/api/v1/chats?id={quote(bad)}", None),
        ("GET", f"/api/v1/chats/{chat}/sessions?id={quote(bad)}", None),
        ("POST", "/api/v1/tasks", {"session_id": bad, "question": "hi"}),
        (
            "POST",
            "/api/v1/tasks",
            {"session_id": session, "content": [{"type": "image", "upload_id": bad}]},
        ),
        ("POST", messages, {"content": [{"type": "image", "upload_id": bad}]}),
        ("POST", f"/api/v1/chats/{chat}/completions", {"question": "hi", "session_id": bad}),
        ("POST", "/api/v1/retrieval", {"question": "q", "dataset_ids": [bad]}),
        ("POST", "/api/v1/retrieval", {"question": "q", "document_ids": [bad]}),
    ]
    for method, path, body in requests:
        response = await call(client, method, path, user, body)
        payload = await response.get_json()
        assert (response.status_code, payload["code"]) == (422, 422), (method, path, payload)


def paginated_routes(app: Quart) -> list[tuple[Rule, type]]:
    found = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        model = getattr(view, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, None)
        if model is not None and "page" in model.model_fields:
            found.append((rule, model))
    return found


async def test_every_paginated_list_uses_the_shared_pagination(app: Quart) -> None:
    routes = paginated_routes(app)
    assert len(routes) >= 6
    assert [rule.rule for rule, model in routes if not issubclass(model, Pagination)] == []


async def test_huge_page_numbers_are_422_and_the_last_page_works(
    app: Quart, client: QuartClient, root: Account
) -> None:
    chat = await create_chat(client, root)
    created = await client.post(f"/api/v1/chats/{chat}/sessions", json={}, headers=root.headers)
    session = (await created.get_json())["data"]["id"]
    real = {"chat_id": chat, "session_id": session, "user_id": str(root.id)}
    for rule, model in paginated_routes(app):
        path = build_path(rule, {n: real.get(n) or well_formed(rule, n) for n in rule.arguments})
        biggest = model.model_fields["page_size"].metadata
        page_size = next(item.le for item in biggest if getattr(item, "le", None) is not None)
        for query in (f"page={HUGE}", f"page={TWENTY_DIGITS}", f"page_size={HUGE}"):
            response = await client.get(f"{path}?{query}", headers=root.headers)
            assert response.status_code == 422, (path, query, await response.get_json())
        # The largest page allowed, at the largest page size, is a valid (empty) query.
        response = await client.get(
            f"{path}?page={MAX_PAGE}&page_size={page_size}", headers=root.headers
        )
        # 404: a parent this test did not create, or RAGFlow's 404 for an empty filter.
        assert response.status_code in (200, 404), (path, await response.get_json())


@pytest.mark.parametrize("bad", ["a" * 40, "a" * 33, "not-an-id", "x" * 5000])
async def test_malformed_ids_over_the_websocket_are_400_and_the_socket_stays_open(
    live_processes: LiveServer, live_user: Account, bad: str
) -> None:
    url = f"{live_processes.ws_url}?access_token={live_user.access_token}"
    async with websockets.connect(url) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
        for message in (
            {"type": "subscribe", "task_id": bad, "ref": "r"},
            {"type": "unsubscribe", "task_id": bad, "ref": "r"},
            {"type": "cancel", "task_id": bad, "ref": "r"},
            {"type": "send", "session_id": bad, "content": "hi", "ref": "r"},
        ):
            await ws.send(json.dumps(message))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert (reply["type"], reply["code"]) == ("error", 400), (message["type"], reply)
            field = "session_id" if message["type"] == "send" else "task_id"
            assert field in reply["message"]
        await ws.send(json.dumps({"type": "ping", "ref": "p"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
