"""Chat image uploads: validated with Pillow, stored under DATA_DIR/uploads.

Only whole images of a served format within the size limits are kept: every upload is
decoded (`image_validation`, the same checks and decode pool as avatars), not trusted by
name or header, so a stored upload can always be sent to a vision model.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from backend.errors import BadRequest, NotFound, PayloadTooLarge
from backend.models import Upload, User
from backend.models.ids import new_id
from backend.services.image_validation import ImageInfo, decode_pool, verify
from backend.settings import Settings

UPLOAD_URL_PREFIX = "upload:"
MISSING_IMAGE = "[image no longer available]"


async def save_upload(user: User, data: bytes, settings: Settings) -> tuple[Upload, ImageInfo]:
    if not data:
        raise BadRequest("The file is empty: send an image in the 'file' form field")
    if len(data) > settings.upload_image_max_bytes:
        raise PayloadTooLarge(
            f"Image too large: the limit is {settings.upload_image_max_bytes} bytes, "
            "send a smaller or more compressed image"
        )
    info = await decode_pool.run(settings, verify, data, settings.image_max_pixels)
    upload_id = new_id()
    directory = settings.uploads_dir.resolve()
    path = directory / f"{upload_id}.{info.extension}"
    await asyncio.to_thread(write_file, path, data)
    upload = await Upload.create(
        id=upload_id,
        user_id=user.id,
        content_type=info.content_type,
        size=len(data),
        path=str(path),
    )
    return upload, info


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def get_upload(user: User, upload_id: str) -> Upload:
    upload = await Upload.get_or_none(id=upload_id, user_id=user.id)
    if upload is None:
        raise NotFound(f"Upload '{upload_id}' not found")
    return upload


async def read_upload(upload: Upload) -> bytes:
    try:
        return await asyncio.to_thread(Path(upload.path).read_bytes)
    except FileNotFoundError as error:
        raise NotFound(f"Upload '{upload.id}' is no longer stored: upload it again") from error


def upload_ids(parts: list[dict[str, Any]]) -> list[str]:
    """The uploads content parts refer to."""
    return [part["upload_id"] for part in parts if part.get("upload_id")]


async def check_owned(user: User, ids: list[str]) -> None:
    """Every referenced upload must be the user's own."""
    unique = set(ids)
    if not unique:
        return
    owned = await Upload.filter(id__in=unique, user_id=user.id).count()
    if owned != len(unique):
        raise NotFound("Image upload not found: upload it first with POST /api/v1/uploads")


def upload_url(upload_id: str) -> str:
    """How a task stores an uploaded image: a reference, inlined only when sent."""
    return UPLOAD_URL_PREFIX + upload_id


async def data_url(upload_id: str) -> str | None:
    """The upload as a data URL for a vision model; None if it is gone."""
    upload = await Upload.get_or_none(id=upload_id)
    if upload is None:
        return None
    try:
        data = await read_upload(upload)
    except NotFound:
        return None
    return f"data:{upload.content_type};base64,{base64.b64encode(data).decode('ascii')}"


async def inline_uploads(content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Content parts as a provider takes them: `upload_url` references become data URLs,
    and an image deleted since the turn was queued becomes a short note."""
    if isinstance(content, str):
        return content
    inlined = []
    for part in content:
        url = (part.get("image_url") or {}).get("url", "")
        if part.get("type") == "image_url" and url.startswith(UPLOAD_URL_PREFIX):
            data = await data_url(url.removeprefix(UPLOAD_URL_PREFIX))
            part = (
                {"type": "text", "text": MISSING_IMAGE}
                if data is None
                else {**part, "image_url": {**part["image_url"], "url": data}}
            )
        inlined.append(part)
    return inlined
