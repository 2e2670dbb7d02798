"""Avatars: any common image in, a 128x128 JPEG out, hostile files refused with a 4xx."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError
from quart import Request

from backend.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from backend.models import User
from backend.settings import Settings

SIZE = (128, 128)
FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
# 40 megapixels covers any phone photo; beyond that a small file is a decompression bomb.
MAX_PIXELS = 40_000_000
JPEG_QUALITY = 85
BACKGROUND = (255, 255, 255)
CORRUPT = "The image is truncated or corrupt: upload the file again"


def avatars_dir(settings: Settings) -> Path:
    return settings.data_dir / "avatars"


def avatar_path(user: User, settings: Settings) -> Path:
    return avatars_dir(settings) / f"{user.id}.jpg"


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


def render(data: bytes) -> bytes:
    """Decode, orient by EXIF, center-crop and scale to 128x128, encode as JPEG."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType("Not a supported image: send a JPEG, PNG, WebP or GIF") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"Image too large: at most {MAX_PIXELS} pixels") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadRequest(CORRUPT) from exc
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise PayloadTooLarge(f"Image too large: {width}x{height} is over {MAX_PIXELS} pixels")
        if image.format == "JPEG":
            image.draft("RGB", (SIZE[0] * 2, SIZE[1] * 2))
        try:
            image.load()
            oriented = ImageOps.exif_transpose(image)
            square = ImageOps.fit(flatten(oriented), SIZE, Image.Resampling.LANCZOS)
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadRequest(CORRUPT) from exc
    out = io.BytesIO()
    square.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)


async def set_avatar(user: User, data: bytes, settings: Settings) -> User:
    """Store the rendered avatar; decoding runs in a thread so the event loop stays free."""
    jpeg = await asyncio.to_thread(render, data)
    await asyncio.to_thread(write_atomically, avatar_path(user, settings), jpeg)
    user.avatar_updated_at = datetime.now(UTC)
    await user.save(update_fields=["avatar_updated_at"])
    return user


async def read_avatar(user: User, settings: Settings) -> bytes:
    path = avatar_path(user, settings)
    if user.avatar_updated_at is None or not path.exists():
        raise NotFound("No avatar yet: upload one with PUT /api/v1/users/me/avatar")
    return await asyncio.to_thread(path.read_bytes)
