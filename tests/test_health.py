"""Probes and the error envelope for requests that match no route."""

from quart.testing import QuartClient


async def test_healthz(client: QuartClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert (await response.get_json()) == {"status": "ok"}


async def test_readyz_reports_sql_and_redis(client: QuartClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert (await response.get_json())["status"] == "ready"


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


async def test_openapi_document_served(client: QuartClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert (await response.get_json())["openapi"].startswith("3.")
