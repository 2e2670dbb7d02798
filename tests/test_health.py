"""Probes and the error envelope for requests that match no route."""

import httpx
import pytest
from quart.testing import QuartClient

from tests.support.live_server import LiveServer


async def test_healthz(client: QuartClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert (await response.get_json()) == {"status": "ok"}


async def test_readyz_reports_sql_and_redis(client: QuartClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = await response.get_json()
    # No worker runs beside the in-process app: its queues may be reported, nothing else.
    assert body["status"] in ("ready", "degraded")
    assert set(body.get("down", {})) <= {"chat workers", "ingest workers"}


async def test_unknown_route_is_enveloped_404(client: QuartClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    body = await response.get_json()
    assert response.status_code == 404
    assert body["code"] == 404 and "no such route" in body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]


async def test_wrong_method_is_enveloped_405(client: QuartClient) -> None:
    response = await client.delete("/healthz")
    assert response.status_code == 405
    assert (await response.get_json())["code"] == 405


@pytest.mark.parametrize("method", ["TRACE", "PATCH", "PROPFIND"])
async def test_an_unsupported_method_is_405_with_allow(client: QuartClient, method: str) -> None:
    response = await client.open("/api/v1/datasets", method=method)
    assert response.status_code == 405
    allowed = {name.strip() for name in response.headers["Allow"].split(",")}
    assert {"GET", "POST", "DELETE"} <= allowed and method not in allowed
    assert "GET" in (await response.get_json())["message"]


async def test_trace_over_a_socket_is_405_with_allow(live_server: LiveServer) -> None:
    """Hypercorn hands TRACE to the app like any method: the app answers it."""
    async with httpx.AsyncClient(base_url=live_server.base_url) as http:
        response = await http.request("TRACE", "/healthz")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"] and "TRACE" not in response.headers["Allow"]


async def test_openapi_document_served(client: QuartClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert (await response.get_json())["openapi"].startswith("3.")
