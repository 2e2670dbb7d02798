"""nginx from Debian's packages for the proxy tests: found, or installed with apt-get when
we can (root, apt-get present); a test skips saying why when neither works."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live_server import ServerProcess

INSTALL_TIMEOUT_SECONDS = 300
# nginx run by a test: in the foreground, every path under its own directory, as root when
# the tests are (nginx's workers would otherwise drop to `nobody`).
MAIN_CONFIG = """
{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{site}
}}
"""


def main_config(root: Path, site: str) -> str:
    """A whole nginx.conf around `site` (upstreams and servers)."""
    return MAIN_CONFIG.format(user="user root;" if os.geteuid() == 0 else "", root=root, site=site)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def install_nginx() -> str:
    """The nginx binary, installing Debian's package if needed; skips when impossible."""
    if found := nginx_binary():
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("nginx is not installed and apt-get cannot be run here (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(
            ["apt-get", "install", "-y", "nginx"],
            capture_output=True,
            env=env,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("nginx is not installed and apt-get install nginx timed out")
    if found := nginx_binary():
        return found
    pytest.skip(f"nginx could not be installed: {result.stderr.decode(errors='replace')[-300:]}")


async def wait_listening(
    port: int, process: ServerProcess, root: Path, *, scheme: str = "http", verify: Any = True
) -> None:
    deadline = time.monotonic() + 15
    async with httpx.AsyncClient(timeout=2, verify=verify) as client:
        while time.monotonic() < deadline:
            if process.process.poll() is not None:
                break
            try:
                if (await client.get(f"{scheme}://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    error_log = root / "error.log"
    log = error_log.read_text() if error_log.exists() else process.log_tail()
    process.stop()
    raise RuntimeError(f"nginx did not start:\n{log}")
