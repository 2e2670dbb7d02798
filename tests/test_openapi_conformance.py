"""The API description tells the truth: schemathesis over the whole OpenAPI document.

Every operation of `/openapi.json` is called with generated requests, valid and invalid
(examples, coverage of each parameter's edges, then fuzzing), as a user and as an
administrator, and every response must be no server error, with a documented status,
a documented content type and a body matching its documented schema.

It runs against the real stack over a socket (Hypercorn, an arq chat worker, fake
OpenAI-compatible and WeChat upstreams; tests/support/conformance.py), not through an
ASGI test client: the body limits, HTTP parsing and streamed responses under test live
in the server and the worker, and a streamed answer only ends when a worker writes its
last event. The run is schemathesis' command line rather than its pytest plugin, whose
lazy loader does not work with pytest 9.2. It is deterministic (derandomized
Hypothesis, no example database) and bounded (a few examples per operation), and its
stack and files are removed at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.settings import Settings
from tests.support.conformance import (
    ConformanceStack,
    RunSettings,
    conformance_stack,
    schemathesis_run,
)

pytestmark = pytest.mark.sqlite_only

RUN = RunSettings(
    max_examples=8, seed=20261202, request_timeout_seconds=30, run_timeout_seconds=900
)


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ConformanceStack]:
    async with conformance_stack(settings, tmp_path_factory.mktemp("conformance")) as running:
        yield running


def stream_cases(stack: ConformanceStack) -> list[tuple[str, str, dict[str, Any]]]:
    """One request that succeeds for every operation that streams or answers raw bytes."""
    ids = stack.user.known_ids
    chat, session, upload = ids["chat_id"][0], ids["session_id"][0], ids["upload_id"][0]
    answered = requests.post(
        f"{stack.base_url}/api/v1/tasks",
        json={"session_id": session, "question": "hi"},
        headers={"Authorization": f"Bearer {stack.user.token}"},
        timeout=30,
    )
    assert answered.status_code == 201, answered.text
    messages = "/api/v1/chats/{chat_id}/sessions/{session_id}/messages"
    converse = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    return [
        (
            "POST",
            "/api/v1/tasks",
            {"body": {"session_id": session, "question": "hi", "stream": True}},
        ),
        (
            "POST",
            messages,
            {
                "path_parameters": {"chat_id": chat, "session_id": session},
                "body": {"content": "hi", "stream": True},
            },
        ),
        (
            "GET",
            "/api/v1/tasks/{task_id}/stream",
            {"path_parameters": {"task_id": answered.json()["data"]["task_id"]}},
        ),
        (
            "POST",
            "/api/v1/chats/{chat_id}/completions",
            {"path_parameters": {"chat_id": chat}, "body": {"question": "hi"}},
        ),
        (
            "POST",
            "/api/v1/chats/{chat_id}/completions",
            {"path_parameters": {"chat_id": chat}, "body": {"question": "hi", "stream": False}},
        ),
        ("POST", "/api/converse", {"body": converse}),
        ("POST", "/api/converse/v2", {"body": converse}),
        ("POST", "/api/converse/v3", {"body": converse}),
        ("GET", "/api/v1/uploads/{upload_id}", {"path_parameters": {"upload_id": upload}}),
    ]


def test_every_stream_and_raw_body_keeps_its_description(stack: ConformanceStack) -> None:
    """The fuzzer rarely composes a valid streaming request; these are sent as written."""
    config = schemathesis.Config.from_dict({"cache": {"enabled": False}})
    schema = schemathesis.openapi.from_url(stack.document_url, config=config)
    headers = {"Authorization": f"Bearer {stack.user.token}"}
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    for method, path, request in stream_cases(stack):
        case = schema[path][method].Case(**request)
        response = case.call(base_url=stack.base_url, headers=headers, timeout=30)
        assert response.status_code == 200, (method, path, response.text)
        case.validate_response(response, checks=checks)


def assert_no_failures(name: str, stack: ConformanceStack) -> None:
    caller = stack.admin if name == "admin" else stack.user
    run = schemathesis_run(stack, caller, RUN, name)
    assert run.returncode == 0, f"schemathesis as {name}:\n{run.stdout}\n{run.stderr}"
    # The phases, case counts and time, shown with pytest -rP.
    print(run.stdout[run.stdout.find("Examples (") :])


@pytest.mark.timeout(RUN.run_timeout_seconds + 60)
def test_every_operation_keeps_its_description_for_a_user(stack: ConformanceStack) -> None:
    assert_no_failures("user", stack)


@pytest.mark.timeout(RUN.run_timeout_seconds + 60)
def test_every_operation_keeps_its_description_for_an_admin(stack: ConformanceStack) -> None:
    assert_no_failures("admin", stack)
