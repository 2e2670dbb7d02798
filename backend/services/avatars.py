"""Avatars: any common image in, a 128x128 JPEG out, hostile files refused with a 4xx.

The image checks (formats, IMAGE_MAX_PIXELS from the header, truncation) and the decode
pool are `image_validation`'s, shared with chat uploads. Rendering keeps memory near the
decoded pixels: a JPEG is decoded at reduced scale, and anything larger than needed is
shrunk before the full-size conversions.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

from PIL import Image, ImageOps
from quart import Request

from backend.errors import BadRequest, NotFound, PayloadTooLarge
from backend.models import User
from backend.services.image_validation import CORRUPT, decode, decode_pool, open_image
from backend.settings import Settings
from backend.storage.configured import avatar_storage

SIZE = (128, 128)
JPEG_QUALITY = 85
BACKGROUND = (255, 255, 255)
# Modes Image.reduce cannot take; they are shrunk by sampling instead.
UNREDUCIBLE = ("1", "P", "I;16")


def avatar_key(user: User) -> str:
    """The avatar's key in the storage's avatars folder."""
    return f"{user.id}.jpg"


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Avatar too large: the limit is {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, stopping as soon as it passes `limit` instead of buffering all of it."""
    chunks, size = [], 0
    async for chunk in request.body:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(request: Request, limit: int) -> bytes:
    """The uploaded bytes from a multipart `file` field or the raw body, at most `limit`."""
    if (request.content_length or 0) > limit:
        raise too_large(limit)
    if request.mimetype == "multipart/form-data":
        files = await request.files
        upload = files.get("file") or next(iter(files.values()), None)
        if upload is None:
            raise BadRequest("No image in the multipart body: send it in a field named 'file'")
        data = upload.read(limit + 1)
    else:
        data = await read_body(request, limit)
    if len(data) > limit:
        raise too_large(limit)
    if not data:
        raise BadRequest("Empty body: send a JPEG, PNG, WebP or GIF image")
    return data


def flatten(image: Image.Image) -> Image.Image:
    """RGB on white, so transparent pixels don't turn black in the JPEG."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def shrink(image: Image.Image) -> Image.Image:
    """The image at no less than twice the avatar's size on its short side: an integer
    reduction, so the conversions that follow copy a small image, not the full one."""
    factor = min(image.size) // (2 * SIZE[0])
    if factor < 2:
        return image
    if image.mode in UNREDUCIBLE:
        size = (max(1, image.width // factor), max(1, image.height // factor))
        return image.resize(size, Image.Resampling.NEAREST)
    return image.reduce(factor)


def render(data: bytes, max_pixels: int) -> bytes:
    """Check and decode, orient by EXIF, center-crop and scale to 128x128, encode as JPEG."""
    with open_image(data, max_pixels) as image:
        if image.format in ("JPEG", "MPO"):
            image.draft("RGB", (SIZE[0] * 2, SIZE[1] * 2))
        decode(image)
        try:
            ImageOps.exif_transpose(image, in_place=True)
            square = ImageOps.fit(flatten(shrink(image)), SIZE, Image.Resampling.LANCZOS)
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadRequest(CORRUPT) from exc
    out = io.BytesIO()
    square.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


async def set_avatar(user: User, data: bytes, settings: Settings) -> User:
    """Store the rendered avatar; decoding runs in the shared decode pool, off the event loop."""
    jpeg = await decode_pool.run(settings, render, data, settings.image_max_pixels)
    await avatar_storage(settings).write_bytes(avatar_key(user), jpeg)
    user.avatar_updated_at = datetime.now(UTC)
    await user.save(update_fields=["avatar_updated_at"])
    return user


async def read_avatar(user: User, settings: Settings) -> bytes:
    missing = NotFound("No avatar yet: upload one with PUT /api/v1/users/me/avatar")
    if user.avatar_updated_at is None:
        raise missing
    try:
        return await avatar_storage(settings).read_bytes(avatar_key(user))
    except FileNotFoundError as error:
        raise missing from error
