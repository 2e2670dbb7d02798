"""Every list route's query parameters are checked at the edge, never a 500.

A filter longer than the column it filters (`GET /api/v1/datasets?name=` with 255
characters against a 128-character column) used to reach the ORM, whose length check
failed as an unhandled error. Every GET route with a query-string model is found by
walking the URL map (so a new list route is covered, or this fails), called with the
caller's real path ids (so the filter reaches the database), and each parameter gets
hostile values: each must answer 422 naming the parameter, or simply match nothing.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from quart import Quart
from quart.testing import QuartClient
from quart_schema.validation import QUART_SCHEMA_QUERYSTRING_ATTRIBUTE
from werkzeug.routing import Rule

from schemas.streams import StreamQuery
from tests.support.accounts import Account
from tests.support.chats import create_chat, create_session
from tests.support.knowledge import create_dataset, upload_ok

HOSTILE = [
    "x" * 129,
    "x" * 256,
    "x" * 5000,
    "é" * 200,
    "\U0001f600" * 70,
    "%_%",
    "' OR 1=1 --",
    "9" * 30,
    "-1",
    "",
    " ",
]
# Streams (a task's, the document feed) take a cursor and a token, not filters; they stay
# open, and tests/test_task_stream.py and tests/test_feed_live.py check their parameters.
NOT_LISTS = {StreamQuery}


def list_routes(app: Quart) -> list[tuple[Rule, type]]:
    """Every GET route of the HTTP API with a query-string model, and the model."""
    routes = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        model = getattr(view, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, None)
        if "GET" in (rule.methods or ()) and model is not None and model not in NOT_LISTS:
            routes.append((rule, model))
    return sorted(routes, key=lambda pair: pair[0].rule)


async def path_values(client: QuartClient, account: Account) -> dict[str, str]:
    """Real ids of the caller's things, so each list reaches its SQL or search."""
    dataset = await create_dataset(client, account)
    [document] = await upload_ok(client, account, dataset["id"], [("notes.txt", b"notes")])
    chat = await create_chat(client, account)
    session = await create_session(client, account, chat["id"])
    return {
        "dataset_id": dataset["id"],
        "document_id": document["id"],
        "chat_id": chat["id"],
        "session_id": session["id"],
        "user_id": str(account.id),
    }


def build_path(rule: Rule, values: dict[str, str]) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: values[m.group(1)], rule.rule)


async def test_the_walk_finds_every_list_route(app: Quart) -> None:
    found = {rule.rule for rule, _ in list_routes(app)}
    for expected in (
        "/api/v1/datasets",
        "/api/v1/datasets/<id:dataset_id>/documents",
        "/api/v1/datasets/<id:dataset_id>/documents/<id:document_id>/chunks",
        "/api/v1/chats",
        "/api/v1/chats/<id:chat_id>/sessions",
        "/api/v1/users",
    ):
        assert expected in found, sorted(found)


async def test_hostile_query_parameters_on_every_list_route_are_never_a_500(
    app: Quart, client: QuartClient, root: Account
) -> None:
    values = await path_values(client, root)
    failures: list[tuple[Any, ...]] = []
    checked = 0
    for rule, model in list_routes(app):
        path = build_path(rule, values)
        for name in model.model_fields:
            for bad in HOSTILE:
                checked += 1
                url = f"{path}?{quote(name)}={quote(bad, safe='')}"
                response = await client.get(url, headers=root.headers)
                payload = await response.get_json()
                status = response.status_code
                named = status != 422 or name in payload["message"]
                if status not in (200, 404, 422) or payload["code"] not in (0, status) or not named:
                    failures.append((rule.rule, name, bad[:20], status, payload))
    assert checked > 100
    assert failures == []


@pytest.mark.parametrize(
    ("path", "longest"),
    [("/api/v1/datasets", 128), ("/api/v1/chats", 255)],
)
async def test_a_name_filter_is_bounded_by_its_column(
    client: QuartClient, owner: Account, path: str, longest: int
) -> None:
    """As long as the column: no match (RAGFlow's 404); one more: 422 saying the limit."""
    fits = await client.get(f"{path}?name={'x' * longest}", headers=owner.headers)
    assert fits.status_code == 404, await fits.get_data(as_text=True)
    over = await client.get(f"{path}?name={'x' * (longest + 1)}", headers=owner.headers)
    assert over.status_code == 422
    message = (await over.get_json())["message"]
    assert "name" in message and str(longest) in message
