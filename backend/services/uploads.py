"""Chat image uploads: validated with Pillow, stored under DATA_DIR/uploads.

Only whole images of a served format within the size limits are kept: every upload is
decoded (`image_validation`, the same checks and decode pool as avatars), not trusted by
name or header, so a stored upload can always be sent to a vision model. Who may use an
upload in a message is `upload_access`'s business.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from backend.errors import BadRequest, NotFound, PayloadTooLarge
from backend.models import Upload, User
from backend.models.ids import new_id
from backend.services.image_validation import ImageInfo, decode_pool, verify
from backend.settings import Settings


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
