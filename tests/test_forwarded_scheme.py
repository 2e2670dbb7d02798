"""Behind a TLS-terminating proxy (TRUSTED_PROXY_HOPS set, `X-Forwarded-Proto: https`),
the WebSocket still opens: the forwarded scheme of a socket becomes `wss`, not `https`,
which Quart would route as a plain GET (426). Found by the multi-replica test through
nginx (tests/test_replicas.py); here over a real socket with the header nginx sends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.live_server import LiveServer, start_hypercorn


@pytest.fixture(scope="module")
async def proxied_server(live_settings: Settings, live_log_dir: Path) -> AsyncIterator[LiveServer]:
    server = await start_hypercorn(
        live_settings.model_copy(update={"trusted_proxy_hops": 1}), live_log_dir
    )
    yield server
    server.server.stop()


@pytest.mark.parametrize("proto", ["https", "http"])
async def test_a_socket_forwarded_over_tls_opens(proxied_server: LiveServer, proto: str) -> None:
    account: Account = await create_account(proxied_server.settings, password=False)
    headers = {"X-Forwarded-Proto": proto, "X-Forwarded-For": "203.0.113.7"}
    url = f"{proxied_server.ws_url}?access_token={account.access_token}"
    async with websockets.connect(url, additional_headers=headers) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
