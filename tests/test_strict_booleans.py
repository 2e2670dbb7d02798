"""Booleans in request bodies are JSON booleans, and no number is a boolean.

pydantic's lax mode reads `0`, `1`, `"true"`, `"no"` and `"off"` as booleans and `false`
as the number 0, so a client that sent `delete_all: 0` or `similarity_threshold: false`
got a guess. Every JSON body model of every route (found by walking the URL map) and
every WebSocket message is checked: each boolean in its validation schema is strict and
each number refuses booleans (schemas.common.RequestBody). Numeric text stays a number
(SwiftChat sends an image's size as "1024"). Query strings are text and keep reading
`true`/`false`/`1`/`0`.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from quart import Quart
from quart.testing import QuartClient
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE, DataSource

from backend.http.routes.ragflow_ws import ChatMessage
from schemas.common import json_number
from schemas.ws import client_message_adapter
from tests.support.accounts import Account
from tests.support.chats import create_chat, create_session

LAX_TRUTHS = [0, 1, "true", "false", "no", "on", 0.0]


def lax_booleans(schema: Any, where: str = "") -> list[str]:
    """Where a pydantic core schema accepts a boolean in lax mode."""
    found = []
    if isinstance(schema, dict):
        if schema.get("type") == "bool" and not schema.get("strict"):
            found.append(where or "<root>")
        for key, value in schema.items():
            found += lax_booleans(value, f"{where}.{key}" if where else str(key))
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += lax_booleans(value, f"{where}[{index}]")
    return found


def lax_numbers(schema: Any, where: str = "", guarded: bool = False) -> list[str]:
    """Where a pydantic core schema takes a number without refusing booleans."""
    found = []
    if isinstance(schema, dict):
        if schema.get("type") in ("int", "float") and not guarded:
            found.append(where or "<root>")
        function = schema.get("function")
        inner_guarded = isinstance(function, dict) and function.get("function") is json_number
        for key, value in schema.items():
            path = f"{where}.{key}" if where else str(key)
            found += lax_numbers(value, path, inner_guarded and key == "schema")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += lax_numbers(value, f"{where}[{index}]")
    return found


def json_body_models(app: Quart) -> dict[str, type[BaseModel]]:
    models = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        request = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
        if request is not None and request[1] is DataSource.JSON:
            models[f"{rule.rule} {request[0].__name__}"] = request[0]
    return models


def test_every_boolean_in_every_request_body_is_strict(app: Quart) -> None:
    models = json_body_models(app)
    assert len(models) > 30, "the URL map walk found too few JSON bodies"
    lax = {
        name: where
        for name, model in models.items()
        if (where := lax_booleans(model.__pydantic_core_schema__))
    }
    assert lax == {}


def test_no_number_in_any_request_body_takes_a_boolean(app: Quart) -> None:
    lax = {
        name: where
        for name, model in json_body_models(app).items()
        if (where := lax_numbers(model.__pydantic_core_schema__))
    }
    assert lax == {}
    assert lax_numbers(client_message_adapter.core_schema) == []


def test_websocket_messages_take_json_booleans_only() -> None:
    assert lax_booleans(client_message_adapter.core_schema) == []
    assert lax_booleans(ChatMessage.__pydantic_core_schema__) == []
    chat = {"type": "chat", "chat_id": "a" * 32, "question": "hi"}
    assert ChatMessage.model_validate({**chat, "stream": False}).stream is False
    for lax in LAX_TRUTHS:
        with pytest.raises(ValidationError):
            ChatMessage.model_validate({**chat, "stream": lax})


@pytest.mark.parametrize("lax", LAX_TRUTHS)
async def test_a_number_or_a_string_for_a_boolean_is_a_422(
    client: QuartClient, user: Account, lax: Any
) -> None:
    chat = await create_chat(client, user)
    session = await create_session(client, user, chat["id"])
    body = {"session_id": session["id"], "question": "hi", "stream": lax}
    response = await client.post("/api/v1/tasks", json=body, headers=user.headers)
    assert response.status_code == 422
    assert "stream" in (await response.get_json())["message"]
    update = await client.put(
        f"/api/v1/chats/{chat['id']}", json={"public": lax}, headers=user.headers
    )
    assert update.status_code == 422


@pytest.mark.parametrize("lax", [False, True])
async def test_a_boolean_for_a_number_is_a_422(
    client: QuartClient, user: Account, lax: Any
) -> None:
    """schemathesis found `prompt.similarity_threshold: false` accepted as 0.0."""
    for prompt in ({"similarity_threshold": lax}, {"top_n": lax}):
        body = {"name": "numbers", "prompt": prompt}
        response = await client.post("/api/v1/chats", json=body, headers=user.headers)
        assert response.status_code == 422, prompt
        assert "not a boolean" in (await response.get_json())["message"]
    fine = {"name": "numbers", "prompt": {"similarity_threshold": 1, "top_n": "6"}}
    response = await client.post("/api/v1/chats", json=fine, headers=user.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)


async def test_query_strings_still_read_true_and_false(client: QuartClient, user: Account) -> None:
    for text in ("true", "false", "1", "0"):
        response = await client.get(f"/api/v1/chats?desc={text}&page=1", headers=user.headers)
        assert response.status_code == 200, await response.get_data(as_text=True)
