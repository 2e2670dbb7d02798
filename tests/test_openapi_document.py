"""The OpenAPI document describes every response a route gives: its errors in the
envelope, its streams, its raw bodies. (tests/test_openapi_conformance.py checks the
document against the running server.)"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from quart.testing import QuartClient

from tests.support.accounts import Account
from tests.support.knowledge import create_dataset

pytestmark = pytest.mark.sqlite_only

METHODS = {"get", "post", "put", "patch", "delete"}
ERROR_REF = "#/components/schemas/ErrorBody"
# The WebSocket's HTTP face answers 101 or 426 only.
NOT_HTTP = {("get", "/api/v1/ws")}


async def document(client: QuartClient) -> dict[str, Any]:
    return await (await client.get("/openapi.json")).get_json()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS and (method, path) not in NOT_HTTP
    ]


async def test_every_operation_documents_a_success_and_its_errors_in_the_envelope(
    client: QuartClient,
) -> None:
    doc = await document(client)
    assert set(doc["components"]["schemas"]["ErrorBody"]["required"]) == {"code", "message"}
    for method, path, operation in operations(doc):
        responses = operation["responses"]
        assert any(status.startswith("2") for status in responses), (method, path)
        expected = set()
        if operation.get("security"):
            expected.add("401")
        if any(parameter["in"] == "path" for parameter in operation["parameters"]):
            expected.add("404")
        if "requestBody" in operation:
            expected |= {"400", "413", "422"}
        assert expected <= set(responses), (method, path, sorted(responses))
        for status, response in responses.items():
            if status.startswith(("4", "5")) and path != "/api/v1/session/oauth2/token":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (method, path, status)
            assert status != "500", (method, path)


async def test_administrator_routes_document_403_and_rules_their_own_statuses(
    client: QuartClient,
) -> None:
    paths = (await document(client))["paths"]
    assert "403" in paths["/api/v1/users"]["get"]["responses"]
    assert "403" in paths["/api/v1/codes"]["post"]["responses"]
    assert "403" not in paths["/api/v1/users/me"]["get"]["responses"]
    assert {"402", "404", "503"} <= set(paths["/api/v1/tasks"]["post"]["responses"])
    assert {"400", "409", "410"} <= set(paths["/api/v1/tasks/{task_id}/stream"]["get"]["responses"])
    assert {"404", "409", "410"} <= set(paths["/api/v1/users/me/credits"]["post"]["responses"])
    login = paths["/api/v1/session/oauth2/token"]["post"]["responses"]
    assert "error" in login["401"]["content"]["application/json"]["schema"]["properties"]
    assert "Retry-After" in login["429"]["headers"]


async def test_streams_and_raw_bodies_are_documented(client: QuartClient) -> None:
    paths = (await document(client))["paths"]
    task = paths["/api/v1/tasks"]["post"]["responses"]
    assert list(task["200"]["content"]) == ["text/event-stream"]
    assert "X-Task-ID" in task["200"]["headers"]
    assert list(task["201"]["content"]) == ["application/json"]
    messages = paths["/api/v1/chats/{chat_id}/sessions/{session_id}/messages"]["post"]
    assert list(messages["responses"]["200"]["content"]) == ["text/event-stream"]
    completion = paths["/api/v1/chats/{chat_id}/completions"]["post"]["responses"]["200"]
    assert set(completion["content"]) == {"application/json", "text/event-stream"}
    converse = paths["/api/converse"]["post"]["responses"]["200"]
    assert list(converse["content"]) == ["text/event-stream"]
    upload = paths["/api/v1/uploads/{upload_id}"]["get"]["responses"]["200"]
    assert set(upload["content"]) == {"image/png", "image/jpeg", "image/gif", "image/webp"}


def frame_variants(response: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each documented SSE event of a response by name."""
    frame = response["content"]["text/event-stream"]["schema"]
    assert {"event", "data"} <= set(frame["required"])
    return {variant["properties"]["event"]["const"]: variant for variant in frame["oneOf"]}


async def test_a_task_stream_documents_each_event_and_its_data(client: QuartClient) -> None:
    paths = (await document(client))["paths"]
    events = frame_variants(paths["/api/v1/tasks/{task_id}/stream"]["get"]["responses"]["200"])
    assert {"token", "usage", "done", "error", "cancelled"} <= set(events)
    assert "task" not in events
    token = events["token"]["properties"]["data"]["contentSchema"]
    assert token["required"] == ["delta"]
    assert "type" not in events["done"]["properties"]["data"]["contentSchema"]["properties"]
    assert all(variant["required"] == ["id"] for variant in events.values())


async def test_a_new_task_stream_opens_with_the_task_id(client: QuartClient) -> None:
    paths = (await document(client))["paths"]
    events = frame_variants(paths["/api/v1/tasks"]["post"]["responses"]["200"])
    assert "id" not in events["task"].get("required", [])
    assert events["task"]["properties"]["data"]["contentSchema"]["required"] == ["task_id"]
    assert events["done"]["required"] == ["id"]


async def test_docs_page_loads_only_local_assets_which_are_served(client: QuartClient) -> None:
    """/docs works without internet: Swagger UI comes from the swagger-ui-py package."""
    response = await client.get("/docs")
    assert response.status_code == 200
    page = await response.get_data(as_text=True)
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page)
    assert len(urls) == 2, urls
    assert "http" not in page.replace("http-equiv", "")
    for url in urls:
        assert url.startswith("/docs/assets/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        body = await asset.get_data()
        assert len(body) > 100_000, url
        assert asset.mimetype == ("text/css" if url.endswith(".css") else "text/javascript")
    script = next(url for url in urls if url.endswith(".js"))
    assert b"SwaggerUIBundle" in await (await client.get(script)).get_data()
    for missing in ("/docs/assets/0.0/swagger-ui.css", "/docs/assets/x/../../app.py"):
        assert (await client.get(missing)).status_code == 404


def resolved(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def body_schema(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    content = doc["paths"][path][method]["requestBody"]["content"]["application/json"]
    return resolved(doc, content["schema"])


async def test_every_request_body_is_required(client: QuartClient) -> None:
    """A request without its body is a 422, so the document must not call it optional."""
    doc = await document(client)
    bodies = [(m, p, op) for m, p, op in operations(doc) if "requestBody" in op]
    assert len(bodies) > 30
    assert [(m, p) for m, p, op in bodies if op["requestBody"].get("required") is not True] == []


async def test_rules_the_server_enforces_are_in_the_schemas(client: QuartClient) -> None:
    doc = await document(client)
    # Batch deletes: ids or delete_all: true, never an empty body; ids each once.
    for path, ids in (
        ("/api/v1/datasets", "ids"),
        ("/api/v1/datasets/{dataset_id}/documents", "ids"),
        ("/api/v1/datasets/{dataset_id}/documents/{document_id}/chunks", "chunk_ids"),
    ):
        schema = body_schema(doc, "delete", path)
        assert {"required": ["delete_all"], "properties": {"delete_all": {"const": True}}} in (
            schema["anyOf"]
        ), path
        assert {"required": [ids], "properties": {ids: {"type": "array"}}} in schema["anyOf"]
        listed = next(s for s in schema["properties"][ids]["anyOf"] if s.get("type") == "array")
        assert listed["uniqueItems"] is True, path
        assert schema["properties"]["delete_all"]["type"] == "boolean"
    for path in ("/api/v1/chats", "/api/v1/chats/{chat_id}/sessions"):
        ids = body_schema(doc, "delete", path)["properties"]["ids"]
        assert ids["uniqueItems"] is True and ids["minItems"] == 1
    retrieval = body_schema(doc, "post", "/api/v1/retrieval")
    fields = retrieval["properties"]
    assert fields["dataset_ids"]["uniqueItems"] is fields["document_ids"]["uniqueItems"] is True
    assert sorted(branch["required"][0] for branch in retrieval["anyOf"]) == [
        "dataset_ids",
        "document_ids",
    ]
    assert fields["use_kg"]["const"] is fields["toc_enhance"]["const"] is False
    # Exactly one of question / content.
    task = body_schema(doc, "post", "/api/v1/tasks")
    assert [branch["required"] for branch in task["oneOf"]] == [["question"], ["content"]]
    messages = "/api/v1/chats/{chat_id}/sessions/{session_id}/messages"
    message = body_schema(doc, "post", messages)
    assert sorted(branch["required"][0] for branch in message["oneOf"]) == ["content", "question"]
    # Dataset names: Basic Multilingual Plane only, said as a pattern.
    name = body_schema(doc, "post", "/api/v1/datasets")["properties"]["name"]
    pattern = re.compile(name["pattern"])
    assert pattern.fullmatch("Handbook 手册 é") and not pattern.fullmatch("Handbook \U0001f4d8")


def concrete(path: str, known: dict[str, str]) -> str:
    """The path with a value for each parameter: the caller's own where given (uploads
    read their body only once the dataset is found), else well-formed ids of nothing."""
    values = {"user_id": "2147483647", "code": "NOPE", "platform": "ios", **known}
    return re.sub(r"\{([^}]+)\}", lambda m: values.get(m.group(1), uuid.uuid4().hex), path)


async def test_a_request_without_its_required_body_is_refused(
    client: QuartClient, root: Account
) -> None:
    """What `required: true` promises: every operation with a body answers a request
    without one with a 4xx naming the problem, before anything else happens."""
    doc = await document(client)
    known = {"dataset_id": (await create_dataset(client, root))["id"]}
    failures = []
    checked = 0
    for method, path, operation in operations(doc):
        if not operation.get("requestBody", {}).get("required"):
            continue
        media_types = set(operation["requestBody"]["content"])
        headers = dict(root.headers)
        if "application/json" in media_types:
            headers["Content-Type"] = "application/json"
        url = concrete(path, known)
        response = await client.open(url, method=method.upper(), headers=headers)
        checked += 1
        body = await response.get_json()
        if response.status_code not in (400, 415, 422) or body["code"] != response.status_code:
            failures.append((method, path, response.status_code, body))
    assert checked > 30
    assert failures == []
