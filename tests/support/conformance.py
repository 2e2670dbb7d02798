"""A private live stack for the schemathesis run, callers with things of their own, and
the run itself (schemathesis' command line, configured by a schemathesis.toml).

The stack has its own SQL database, data directory and Redis prefix: an administrator's
fuzzed requests disable accounts, withdraw codes and publish app versions, which no
other test may see. Its fake upstreams run on their own event loop, because the run
blocks the test's loop while the chat worker streams answers from them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backend.settings import Settings
from tests.support.background_loop import in_background_loop
from tests.support.fake_openai import FakeOpenAIServer, fake_openai_server
from tests.support.images import image_bytes
from tests.support.ingest_stack import start_ingest_worker
from tests.support.live_server import (
    ServerProcess,
    delete_prefix,
    start_chat_worker,
    start_hypercorn,
)
from tests.support.task_models import with_models
from tests.support.wechat_server import FakeWechat, fake_wechat_server

WECHAT_APPID, WECHAT_SECRET = "wx-conformance", "wechat-secret"
ADMIN_USERNAME, ADMIN_PASSWORD = "conformance-root", "conformance-root-password"
USER_PASSWORD = "conformance user password"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    # A method no operation documents (TRACE, PATCH on a GET route...) is a 405 with `Allow`.
    "unsupported_method",
)
# How often a generated id is swapped for one of the caller's real ones, so that the
# success responses (and streams) are checked too, not only the 404s of random ids.
KNOWN_ID_PROBABILITY = 0.5
# Generated values that name things of the caller's, by schemathesis parameter key.
KNOWN_PARAMETERS = {
    "path.chat_id": "chat_id",
    "path.session_id": "session_id",
    "path.message_id": "message_id",
    "path.task_id": "task_id",
    "path.upload_id": "upload_id",
    "path.key_id": "key_id",
    "path.code": "code",
    "path.user_id": "user_id",
    "path.dataset_id": "dataset_id",
    "path.document_id": "document_id",
    "body.session_id": "session_id",
    "body.code": "code",
}


@dataclass
class Caller:
    """A bearer token and the ids of things that caller may use."""

    token: str
    known_ids: dict[str, list[str | int]] = field(default_factory=dict)


@dataclass
class ConformanceStack:
    base_url: str
    root: Path
    user: Caller
    admin: Caller

    @property
    def document_url(self) -> str:
        return f"{self.base_url}/openapi.json"


@asynccontextmanager
async def upstreams() -> AsyncIterator[tuple[FakeOpenAIServer, FakeWechat]]:
    async with (
        fake_openai_server(tokens=20) as openai,
        fake_wechat_server(WECHAT_APPID, WECHAT_SECRET) as wechat,
    ):
        yield openai, wechat


def stack_settings(
    base: Settings, root: Path, openai: FakeOpenAIServer, wechat: FakeWechat
) -> Settings:
    return with_models(base, openai.base_url).model_copy(
        update={
            "database_url": f"sqlite://{root / 'conformance.sqlite3'}",
            "data_dir": root / "data",
            "redis_prefix": f"conformance-{uuid.uuid4().hex[:8]}",
            "admin_username": ADMIN_USERNAME,
            "admin_password": ADMIN_PASSWORD,
            "new_user_credits": 1_000_000,
            "wechat_appid": WECHAT_APPID,
            "wechat_secret": WECHAT_SECRET,
            "wechat_base_url": wechat.base_url,
            "image_base_url": openai.base_url,
            "image_api_key": "test-key",
            "sse_heartbeat_seconds": 1.0,
            "stream_lease_wait_seconds": 1.0,
            "log_level": "WARNING",
            # An ingest worker parses what the generated requests upload (QAnything's
            # document_parser waits for it); OCR is not what this run checks, and the
            # generated 1x1 PNG then ends at once with a 422 instead of a model load.
            "ocr_enabled": False,
        }
    )


async def access_token(http: httpx.AsyncClient, username: str, password: str) -> str:
    response = await http.post(
        "/api/v1/session/oauth2/token", data={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def register_user(http: httpx.AsyncClient) -> str:
    username = f"conformance-{uuid.uuid4().hex[:8]}"
    response = await http.post(
        "/api/v1/users", json={"username": username, "password": USER_PASSWORD}
    )
    assert response.status_code == 201, response.text
    return await access_token(http, username, USER_PASSWORD)


async def created(http: httpx.AsyncClient, token: str, path: str, **kwargs) -> dict:
    response = await http.post(path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
    assert response.status_code == 201, (path, response.status_code, response.text)
    return response.json()["data"]


async def things_of(http: httpx.AsyncClient, token: str) -> dict[str, list[str | int]]:
    """An assistant, a session with a message, a finished task, an upload, an API key, and
    a dataset with a document."""
    chat = await created(http, token, "/api/v1/chats", json={"name": "conformance"})
    sessions = f"/api/v1/chats/{chat['id']}/sessions"
    session = await created(http, token, sessions, json={"name": "conformance"})
    message = await created(
        http, token, f"{sessions}/{session['id']}/messages", json={"content": "context"}
    )
    task = await created(
        http, token, "/api/v1/tasks", json={"session_id": session["id"], "question": "hi"}
    )
    upload = await created(
        http, token, "/api/v1/uploads", files={"file": ("a.png", image_bytes(), "image/png")}
    )
    key = await created(http, token, "/api/v1/users/me/api-keys", json={"name": "conformance"})
    dataset = await created(http, token, "/api/v1/datasets", json={"name": "conformance"})
    documents = await created(
        http,
        token,
        f"/api/v1/datasets/{dataset['id']}/documents",
        files={"file": ("notes.txt", b"Sluice streams answers.", "text/plain")},
    )
    me = await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    return {
        "chat_id": [chat["id"]],
        "session_id": [session["id"]],
        "message_id": [message["id"]],
        "task_id": [task["task_id"]],
        "upload_id": [upload["id"]],
        "key_id": [key["id"]],
        "dataset_id": [dataset["id"]],
        "document_id": [documents[0]["id"]],
        "user_id": [me.json()["data"]["id"]],
    }


async def callers(base_url: str) -> tuple[Caller, Caller]:
    """A new user and the administrator, each with things of their own; the user's id
    and a redeemable code are known to both."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        user = Caller(await register_user(http))
        admin = Caller(await access_token(http, ADMIN_USERNAME, ADMIN_PASSWORD))
        user.known_ids = await things_of(http, user.token)
        admin.known_ids = await things_of(http, admin.token)
        code = await created(
            http, admin.token, "/api/v1/codes", json={"credits": 5, "max_uses": 1000}
        )
    for caller in (user, admin):
        caller.known_ids["code"] = [code["code"]]
    admin.known_ids["user_id"] = [*user.known_ids["user_id"], *admin.known_ids["user_id"]]
    return user, admin


@contextmanager
def background_upstreams() -> Iterator[tuple[FakeOpenAIServer, FakeWechat]]:
    with in_background_loop(upstreams) as running:
        yield running


@asynccontextmanager
async def conformance_stack(base: Settings, root: Path) -> AsyncIterator[ConformanceStack]:
    with background_upstreams() as (openai, wechat):
        settings = stack_settings(base, root, openai, wechat)
        server = await start_hypercorn(settings, root)
        workers: list[ServerProcess] = []
        try:
            workers.append(await start_chat_worker(settings, root))
            workers.append(await start_ingest_worker(settings, root))
            user, admin = await callers(server.base_url)
            yield ConformanceStack(server.base_url, root, user, admin)
        finally:
            for worker in workers:
                worker.stop()
            server.server.stop()
            await delete_prefix(settings.redis_url, settings.redis_prefix)


def toml_value(value: object) -> str:
    """Strings, numbers, booleans and lists of them: JSON spells them as TOML does."""
    return json.dumps(value, ensure_ascii=False)


@dataclass
class RunSettings:
    """Bounds of one run: examples per operation, the fixed seed, time limits."""

    max_examples: int
    seed: int
    request_timeout_seconds: float
    run_timeout_seconds: float


def config_file(stack: ConformanceStack, caller: Caller, run: RunSettings, path: Path) -> Path:
    """The run's schemathesis.toml: the target, the caller's token, and the caller's ids
    as dictionaries that generated ids are sometimes replaced with."""
    lines = [
        f"base-url = {toml_value(stack.base_url)}",
        f"seed = {run.seed}",
        f"request-timeout = {run.request_timeout_seconds}",
        "workers = 1",
        f"headers = {{ Authorization = {toml_value('Bearer ' + caller.token)} }}",
        "[cache]",
        "enabled = false",
        "[generation]",
        'mode = "all"',
        f"max-examples = {run.max_examples}",
        "deterministic = true",
        "[phases.stateful]",
        "enabled = false",
        "[checks]",
        "enabled = false",
        *(f"{check}.enabled = true" for check in CHECKS),
    ]
    for name, values in caller.known_ids.items():
        lines += [f"[dictionaries.{name}]", f"values = {toml_value(values)}"]
    lines.append("[parameters]")
    for key, name in KNOWN_PARAMETERS.items():
        if name in caller.known_ids:
            binding = f"{{ dictionary = {toml_value(name)}, probability = {KNOWN_ID_PROBABILITY} }}"
            lines.append(f"{toml_value(key)} = {binding}")
    # The document status feed streams until the client leaves: schemathesis reads it
    # until the request timeout, so it gets a short one (tests/test_feed_live.py checks it).
    lines += ["[[operations]]", 'include-path = "/api/v1/events"', "request-timeout = 3"]
    path.write_text("\n".join(lines) + "\n")
    return path


def schemathesis_run(
    stack: ConformanceStack, caller: Caller, run: RunSettings, name: str
) -> subprocess.CompletedProcess[str]:
    """One bounded, deterministic run over the whole document; its files stay in the
    stack's temporary directory (the working directory of the run)."""
    workdir = stack.root / name
    workdir.mkdir(exist_ok=True)
    config = config_file(stack, caller, run, workdir / "schemathesis.toml")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(config),
        "run",
        stack.document_url,
        "--phases",
        "examples,coverage,fuzzing",
    ]
    return subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=run.run_timeout_seconds,
        check=False,
    )
