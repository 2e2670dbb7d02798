"""Chat image uploads: Pillow-validated, size-limited, readable by their owner only."""

from __future__ import annotations

import io

import pytest
from quart.datastructures import FileStorage
from quart.testing import QuartClient

from backend.settings import Settings
from tests.support.chats import Account
from tests.support.images import image_bytes


async def upload(client: QuartClient, account: Account | None, data: bytes, name: str = "a.png"):
    headers = account.headers if account else {}
    return await client.post(
        "/api/v1/uploads",
        files={"file": FileStorage(io.BytesIO(data), name, "file", "application/octet-stream")},
        headers=headers,
    )


@pytest.mark.parametrize(("fmt", "content_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
async def test_upload_and_read_back(
    client: QuartClient, owner: Account, settings: Settings, fmt: str, content_type: str
) -> None:
    data = image_bytes(fmt)
    response = await upload(client, owner, data, "photo.bin")
    assert response.status_code == 201
    record = (await response.get_json())["data"]
    assert record["content_type"] == content_type
    assert (record["width"], record["height"]) == (8, 6)
    assert record["size"] == len(data)
    stored = list((settings.uploads_dir).glob(f"{record['id']}.*"))
    assert len(stored) == 1

    fetched = await client.get(f"/api/v1/uploads/{record['id']}", headers=owner.headers)
    assert fetched.status_code == 200
    assert fetched.mimetype == content_type
    assert await fetched.get_data() == data


async def test_only_the_owner_reads_an_upload(
    client: QuartClient, owner: Account, stranger: Account
) -> None:
    record = (await (await upload(client, owner, image_bytes("PNG"))).get_json())["data"]
    hidden = await client.get(f"/api/v1/uploads/{record['id']}", headers=stranger.headers)
    assert hidden.status_code == 404
    missing = await client.get("/api/v1/uploads/0123456789abcdef", headers=owner.headers)
    assert missing.status_code == 404
    assert (await client.get(f"/api/v1/uploads/{record['id']}")).status_code == 401


async def test_upload_requires_auth(client: QuartClient) -> None:
    assert (await upload(client, None, image_bytes("PNG"))).status_code == 401


@pytest.mark.parametrize(
    "data",
    [
        b"definitely not an image",
        image_bytes("PNG")[:40],
        image_bytes("BMP"),
    ],
)
async def test_non_images_are_415(client: QuartClient, owner: Account, data: bytes) -> None:
    response = await upload(client, owner, data)
    assert response.status_code == 415
    assert "PNG" in (await response.get_json())["message"]


async def test_empty_file_is_400(client: QuartClient, owner: Account) -> None:
    assert (await upload(client, owner, b"")).status_code == 400


async def test_missing_file_field_is_422(client: QuartClient, owner: Account) -> None:
    response = await client.post("/api/v1/uploads", form={"other": "x"}, headers=owner.headers)
    assert response.status_code == 422


async def test_too_large_is_413(
    client: QuartClient, owner: Account, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = image_bytes("PNG", (64, 64))
    monkeypatch.setattr(settings, "upload_image_max_bytes", len(data) - 1)
    response = await upload(client, owner, data)
    assert response.status_code == 413
    assert str(len(data) - 1) in (await response.get_json())["message"]


async def test_routes_are_documented(client: QuartClient) -> None:
    paths = (await (await client.get("/openapi.json")).get_json())["paths"]
    assert "post" in paths["/api/v1/uploads"]
    assert "get" in paths["/api/v1/uploads/{upload_id}"]
