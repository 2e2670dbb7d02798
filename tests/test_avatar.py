"""Avatar upload: common formats in, 128x128 JPEG out; hostile files get a 4xx."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from PIL import Image, PngImagePlugin
from quart import Quart
from quart.datastructures import FileStorage
from quart.testing import QuartClient

from backend.errors import PayloadTooLarge
from backend.services import avatars
from tests.support.accounts import Account
from tests.support.images import png_header_only

AVATAR = "/api/v1/users/me/avatar"
RED, BLUE = (255, 0, 0), (0, 0, 255)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def halves(size: tuple[int, int], first: tuple, second: tuple, mode: str = "RGB") -> Image.Image:
    """Left half `first`, right half `second`."""
    image = Image.new(mode, size, second)
    image.paste(first, (0, 0, size[0] // 2, size[1]))
    return image


def near(pixel: tuple, color: tuple, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, color, strict=False))


async def upload(client: QuartClient, account: Account, data: bytes, mime: str = "image/png"):
    return await client.put(AVATAR, data=data, headers=account.headers | {"Content-Type": mime})


async def stored_avatar(client: QuartClient, account: Account) -> Image.Image:
    response = await client.get(AVATAR, headers=account.headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(await response.get_data()))
    assert image.format == "JPEG"
    assert image.size == (128, 128)
    return image.convert("RGB")


async def test_no_avatar_is_404_then_upload_stores_a_128_jpeg(client: QuartClient, user: Account):
    missing = await client.get(AVATAR, headers=user.headers)
    assert missing.status_code == 404
    assert "PUT" in (await missing.get_json())["message"]
    response = await upload(client, user, encode(halves((300, 200), RED, BLUE), "PNG"))
    assert response.status_code == 200
    assert (await response.get_json())["data"]["has_avatar"] is True
    image = await stored_avatar(client, user)
    # Center crop of 300x200 keeps columns 50..250: red on the left, blue on the right.
    assert near(image.getpixel((5, 64)), RED)
    assert near(image.getpixel((122, 64)), BLUE)


async def test_exif_orientation_is_applied(client: QuartClient, user: Account):
    exif = Image.Exif()
    exif[0x0112] = 6  # Rotate 90 degrees clockwise to display: left edge goes to the top.
    data = encode(halves((200, 100), RED, BLUE), "JPEG", exif=exif, quality=95)
    assert (await upload(client, user, data, "image/jpeg")).status_code == 200
    image = await stored_avatar(client, user)
    assert near(image.getpixel((64, 5)), RED)
    assert near(image.getpixel((64, 122)), BLUE)


async def test_transparency_becomes_white_not_black(client: QuartClient, user: Account):
    image = halves((128, 128), (255, 0, 0, 255), (0, 0, 0, 0), mode="RGBA")
    assert (await upload(client, user, encode(image, "PNG"))).status_code == 200
    stored = await stored_avatar(client, user)
    assert near(stored.getpixel((5, 64)), RED)
    assert near(stored.getpixel((122, 64)), (255, 255, 255))


@pytest.mark.parametrize(("fmt", "mime"), [("WEBP", "image/webp"), ("GIF", "image/gif")])
async def test_webp_and_gif_as_multipart(client: QuartClient, user: Account, fmt: str, mime: str):
    data = encode(halves((64, 64), RED, BLUE), fmt)
    response = await client.put(
        AVATAR,
        files={
            "file": FileStorage(io.BytesIO(data), filename=f"a.{fmt.lower()}", content_type=mime)
        },
        headers=user.headers,
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    image = await stored_avatar(client, user)
    assert near(image.getpixel((5, 64)), RED)


async def test_multipart_without_a_file_is_400(client: QuartClient, user: Account):
    body = b'--B\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--B--\r\n'
    headers = user.headers | {"Content-Type": "multipart/form-data; boundary=B"}
    response = await client.put(AVATAR, data=body, headers=headers)
    assert response.status_code == 400
    assert "file" in (await response.get_json())["message"]


async def test_non_images_are_415(client: QuartClient, user: Account):
    for data in (b"%PDF-1.4 definitely not an image", encode(Image.new("RGB", (8, 8)), "BMP")):
        response = await upload(client, user, data, "application/octet-stream")
        assert response.status_code == 415
        assert "JPEG" in (await response.get_json())["message"]


async def test_empty_body_is_400(client: QuartClient, user: Account):
    assert (await upload(client, user, b"")).status_code == 400


async def test_truncated_images_are_400(client: QuartClient, user: Account):
    for fmt in ("PNG", "JPEG"):
        whole = encode(Image.effect_noise((256, 256), 50).convert("RGB"), fmt)
        response = await upload(client, user, whole[: len(whole) // 2])
        assert response.status_code == 400, fmt
        assert "truncated" in (await response.get_json())["message"]


@pytest.mark.parametrize("side", [8_000, 30_000])
async def test_decompression_bombs_are_413(client: QuartClient, user: Account, side: int):
    response = await upload(client, user, png_header_only(side, side))
    assert response.status_code == 413
    assert "pixels" in (await response.get_json())["message"]


@pytest.fixture
async def small_limit(app: Quart) -> AsyncIterator[int]:
    previous = app.config["SETTINGS"]
    app.config["SETTINGS"] = previous.model_copy(update={"avatar_max_bytes": 2_000})
    yield 2_000
    app.config["SETTINGS"] = previous


async def test_oversized_upload_is_413(client: QuartClient, user: Account, small_limit: int):
    data = encode(Image.effect_noise((128, 128), 80).convert("RGB"), "PNG")
    assert len(data) > small_limit
    response = await upload(client, user, data)
    assert response.status_code == 413
    assert str(small_limit) in (await response.get_json())["message"]
    multipart = await client.put(
        AVATAR,
        files={"file": FileStorage(io.BytesIO(data), filename="a.png", content_type="image/png")},
        headers=user.headers,
    )
    assert multipart.status_code == 413


async def test_avatar_needs_authentication_and_is_per_user(
    client: QuartClient, user: Account, other_user: Account
):
    assert (await client.put(AVATAR, data=b"x")).status_code == 401
    assert (await client.get(AVATAR)).status_code == 401
    assert (
        await upload(client, user, encode(Image.new("RGB", (10, 10)), "PNG"))
    ).status_code == 200
    assert (await client.get(AVATAR, headers=other_user.headers)).status_code == 404


async def test_png_text_chunk_bomb_is_400(client: QuartClient, user: Account):
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "A" * (20 * 1024 * 1024), zip=True)
    response = await upload(client, user, encode(Image.new("RGB", (10, 10)), "PNG", pnginfo=info))
    assert response.status_code == 400
    assert "corrupt" in (await response.get_json())["message"]


async def test_a_body_without_length_is_cut_off_at_the_limit():
    """Chunked uploads carry no Content-Length; reading stops once the limit is passed."""
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(100):
            sent.append(index)
            yield b"\0" * 1_000

    with pytest.raises(PayloadTooLarge):
        await avatars.read_body(SimpleNamespace(body=chunks()), 2_500)
    assert len(sent) == 3
    assert len(await avatars.read_body(SimpleNamespace(body=chunks()), 200_000)) == 100_000


async def test_avatar_download_is_documented_as_jpeg(client: QuartClient) -> None:
    paths = (await (await client.get("/openapi.json")).get_json())["paths"]
    response = paths["/api/v1/users/me/avatar"]["get"]["responses"]["200"]
    assert response["content"] == {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}
