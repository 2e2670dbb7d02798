"""`/metrics` in one process: Prometheus' text format (parsed with prometheus-client's own
parser), figures that move with requests, the loopback rule without a token, and the
switch. The multi-process, worker and connection figures: tests/test_metrics_live.py."""

from __future__ import annotations

from quart import Quart
from quart.testing import QuartClient

from backend.settings import Settings
from tests.support.metrics_samples import Samples, parsed, value

# Hypercorn puts the peer's address in the ASGI scope; the test client puts none.
LOOPBACK = {"client": ("127.0.0.1", 40000)}
OUTSIDE = {"client": ("203.0.113.7", 40000)}


async def scrape(client: QuartClient) -> Samples:
    response = await client.get("/metrics", scope_base=LOOPBACK)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parsed(await response.get_data(as_text=True))


async def test_requests_move_the_counters_and_histograms(client: QuartClient) -> None:
    labels = {"route": "/healthz", "method": "GET", "status": "200"}
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get("/healthz")).status_code == 200
    assert (await client.delete("/healthz")).status_code == 405
    after = await scrape(client)
    assert value(after, "sluice_http_requests_total", **labels) == (
        value(before, "sluice_http_requests_total", **labels) + 3
    )
    # A method the route lacks fails routing: no rule matched.
    refused = {"route": "unmatched", "method": "DELETE", "status": "405"}
    assert value(after, "sluice_http_requests_total", **refused) == (
        value(before, "sluice_http_requests_total", **refused) + 1
    )
    count = "sluice_http_request_duration_seconds_count"
    moved = value(after, count, route="/healthz", method="GET") - value(
        before, count, route="/healthz", method="GET"
    )
    assert moved == 3
    assert value(after, "sluice_queue_depth", queue="chat") >= 0
    assert ("sluice_queue_depth", frozenset({("queue", "ingest")})) in after


async def test_without_a_token_only_loopback_clients_are_answered(client: QuartClient) -> None:
    for scope in (OUTSIDE, None, {"client": ("::1", 40000)}):
        response = await client.get("/metrics", scope_base=scope)
        if scope is not None and scope["client"][0] == "::1":
            assert response.status_code == 200
            continue
        assert response.status_code == 403
        assert (await response.get_json())["message"] == (
            "Metrics are served to loopback clients only unless METRICS_TOKEN is set"
        )


async def test_with_a_token_any_address_may_scrape_with_it(
    app: Quart, client: QuartClient, settings: Settings, monkeypatch
) -> None:
    monkeypatch.setitem(
        app.config, "SETTINGS", settings.model_copy(update={"metrics_token": "t0ken"})
    )
    assert (await client.get("/metrics", scope_base=LOOPBACK)).status_code == 401
    allowed = await client.get(
        "/metrics", headers={"Authorization": "Bearer t0ken"}, scope_base=OUTSIDE
    )
    assert allowed.status_code == 200


async def test_metrics_can_be_turned_off(
    app: Quart, client: QuartClient, settings: Settings, monkeypatch
) -> None:
    monkeypatch.setitem(
        app.config, "SETTINGS", settings.model_copy(update={"metrics_enabled": False})
    )
    assert (await client.get("/metrics", scope_base=LOOPBACK)).status_code == 404
