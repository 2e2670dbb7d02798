"""`make run`'s supervisor: the Procfile's processes under supervisord, a crashed one
restarted while the others keep serving, and its log saying so.

Starts `scripts/supervise.py` as `make run` does (web, chat worker, ingest worker on a
free port, with a DATA_DIR of its own), kills the ingest worker with SIGKILL, and
watches it come back through supervisord's XML-RPC socket. About 10-20 s: three Python
processes start, and a restarted one must stay up supervise.START_SECONDS to count.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xmlrpc.client import ServerProxy

import httpx
import pytest
from quart import Quart
from supervisor.xmlrpc import SupervisorTransport

from backend.settings import Settings
from scripts.supervise import read_procfile, stop_seconds, supervisord_config
from tests.support.live_server import free_port, process_env

pytestmark = pytest.mark.sqlite_only

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 60
RESTART_SECONDS = 30


def rpc(socket_path: Path) -> Any:
    transport = SupervisorTransport(None, None, f"unix://{socket_path}")
    return ServerProxy("http://127.0.0.1", transport=transport).supervisor


def wait_for(condition: Any, seconds: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if result := condition():
                return result
        except (OSError, httpx.HTTPError, ConnectionError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} within {seconds} s; supervisord's log:\n{log.read_text()}")


@pytest.fixture
def supervised(app: Quart, settings: Settings, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """`scripts/supervise.py` running the Procfile; (web port, supervisord's output)."""
    port = free_port()
    env = process_env(
        settings.model_copy(
            update={
                "redis_prefix": f"supervised-{uuid.uuid4().hex[:8]}",
                "data_dir": tmp_path,
                "admin_username": "",
                "admin_password": "",
            }
        )
    )
    env.update(PORT=str(port), DATA_DIR=str(tmp_path), WEB_CONCURRENCY="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = tmp_path / "supervisord.out"
    # Appending: supervisord reopens /dev/stdout for the processes' output, and without
    # O_APPEND the two writers would overwrite each other's lines.
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "scripts/supervise.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield port, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_the_config_runs_every_procfile_line_through_a_shell(tmp_path: Path) -> None:
    processes = read_procfile(ROOT / "Procfile")
    assert [p.name for p in processes] == ["web", "chat-worker", "ingest-worker"]
    config = supervisord_config(processes, tmp_path, ROOT)
    assert "[program:ingest-worker]" in config and "autorestart=true" in config
    assert "command=/bin/sh -c 'exec python -m workers ingest'" in config


def test_a_stop_waits_out_the_longest_drain_before_sigkill() -> None:
    """SIGKILL before the drain ends would fail the answers the drain keeps."""
    assert stop_seconds({}) == 40
    assert stop_seconds({"WEB_DRAIN_SECONDS": "5", "WORKER_DRAIN_SECONDS": "90"}) == 100
    assert stop_seconds({"WEB_DRAIN_SECONDS": "45.5", "WORKER_DRAIN_SECONDS": ""}) == 55


async def test_a_killed_ingest_worker_is_restarted_and_web_keeps_answering(
    supervised: tuple[int, Path], tmp_path: Path
) -> None:
    port, log = supervised
    health = f"http://127.0.0.1:{port}/healthz"
    control = rpc(tmp_path / "run" / "supervisor.sock")

    def running(name: str) -> dict[str, Any] | None:
        info = control.getProcessInfo(name)
        return info if info["statename"] == "RUNNING" else None

    def answers() -> bool:
        return httpx.get(health, timeout=5).status_code == 200

    await asyncio.to_thread(wait_for, answers, STARTUP_SECONDS, "web answered", log)
    for name in ("web", "chat-worker"):
        await asyncio.to_thread(
            wait_for, lambda n=name: running(n), STARTUP_SECONDS, f"{name} running", log
        )
    before = await asyncio.to_thread(
        wait_for, lambda: running("ingest-worker"), STARTUP_SECONDS, "ingest-worker running", log
    )
    web_pid = control.getProcessInfo("web")["pid"]

    os.kill(before["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        info = running("ingest-worker")
        return info if info and info["pid"] != before["pid"] else None

    after = await asyncio.to_thread(
        wait_for, restarted, RESTART_SECONDS, "ingest-worker restarted", log
    )
    assert after["pid"] != before["pid"]
    assert await asyncio.to_thread(answers)
    assert control.getProcessInfo("web")["pid"] == web_pid
    assert running("chat-worker") is not None
    said = log.read_text()
    assert "exited: ingest-worker (terminated by SIGKILL; not expected)" in said
    assert said.count("spawned: 'ingest-worker'") == 2
