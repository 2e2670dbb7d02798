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

import pytest

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


def assert_no_failures(name: str, stack: ConformanceStack) -> None:
    caller = stack.admin if name == "admin" else stack.user
    run = schemathesis_run(stack, caller, RUN, name)
    assert run.returncode == 0, f"schemathesis as {name}:\n{run.stdout}\n{run.stderr}"


@pytest.mark.timeout(RUN.run_timeout_seconds + 60)
def test_every_operation_keeps_its_description_for_a_user(stack: ConformanceStack) -> None:
    assert_no_failures("user", stack)


@pytest.mark.timeout(RUN.run_timeout_seconds + 60)
def test_every_operation_keeps_its_description_for_an_admin(stack: ConformanceStack) -> None:
    assert_no_failures("admin", stack)
