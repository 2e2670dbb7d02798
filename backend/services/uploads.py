"""Chat image uploads: validated with Pillow, kept in the file storage's uploads folder.

Only whole images of a served format within the size limits are kept: every upload is
decoded (`image_validation`, the same checks and decode pool as avatars), not trusted by
name or header, so a stored upload can always be sent to a vision model. Who may use an
upload in a message is `upload_access`'s business.
"""

from __future__ import annotations

from pathlib import PurePath

from backend.errors import BadRequest, NotFound, PayloadTooLarge
from backend.models import Upload, User
from backend.models.ids import new_id
from backend.services.image_validation import ImageInfo, decode_pool, verify
from backend.settings import Settings
from backend.storage.configured import upload_storage


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
    key = f"{upload_id}.{info.extension}"
    await upload_storage(settings).write_bytes(key, data)
    upload = await Upload.create(
        id=upload_id, user_id=user.id, content_type=info.content_type, size=len(data), path=key
    )
    return upload, info


def upload_key(upload: Upload) -> str:
    """The file's key in the uploads folder. `path` holds it; rows written before the
    storage interface hold the absolute path under DATA_DIR/uploads, whose last
    segment is the same key."""
    return PurePath(upload.path).name


async def get_upload(user: User, upload_id: str) -> Upload:
    upload = await Upload.get_or_none(id=upload_id, user_id=user.id)
    if upload is None:
        raise NotFound(f"Upload '{upload_id}' not found")
    return upload


async def read_upload(upload: Upload, settings: Settings) -> bytes:
    try:
        return await upload_storage(settings).read_bytes(upload_key(upload))
    except (FileNotFoundError, ValueError) as error:  # ValueError: no key of Sluice's
        raise NotFound(f"Upload '{upload.id}' is no longer stored: upload it again") from error
