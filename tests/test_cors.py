"""CORS is off by default and answers preflights for configured origins."""

from __future__ import annotations

from backend.app import create_app
from backend.settings import Settings


async def test_cors_headers_for_configured_origin(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": ["https://app.example"]}))
    client = app.test_client()
    response = await client.options(
        "/healthz",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert response.headers.get("Access-Control-Allow-Origin") == "https://app.example"
    other = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_no_cors_headers_by_default(client) -> None:
    response = await client.get("/healthz", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
