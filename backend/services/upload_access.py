"""Who may use an uploaded image in a message: decided here, and only here.

A message can name an upload in two ways: an image part's `upload_id`, or an
`upload:<id>` URL (the form a task stores, and the form the worker inlines). Every
reader of a reference goes through `referenced_upload`, so the edge and the worker
cannot disagree about what a part points at:

- at the edge, `authorize_parts` rewrites every reference to the one stored form,
  `{"type": "image", "upload_id": <id>}`, and refuses an upload the sender does not own
  with 404, as for any other user's id. A message's parts are stored or queued only
  after passing through it;
- when a turn is sent, `inline_uploads` inlines only uploads of the task's own user, so
  a forged or older row naming someone else's upload inlines nothing.
"""

from __future__ import annotations

import base64
from typing import Any

from backend.errors import NotFound
from backend.models import Upload, User
from backend.services.uploads import read_upload
from backend.settings import Settings
from schemas.ids import is_public_id

UPLOAD_URL_PREFIX = "upload:"
MISSING_IMAGE = "[image no longer available]"


def upload_url(upload_id: str) -> str:
    """How a task stores an uploaded image: a reference, inlined only when sent."""
    return UPLOAD_URL_PREFIX + upload_id


def upload_in_url(url: str) -> str | None:
    """The upload an `upload:` URL names (any letter case, blanks around ignored)."""
    text = url.strip()
    if text[: len(UPLOAD_URL_PREFIX)].lower() != UPLOAD_URL_PREFIX:
        return None
    return text[len(UPLOAD_URL_PREFIX) :].strip()


def referenced_upload(part: dict[str, Any]) -> str | None:
    """The upload a content part names, whichever form it takes; None if it names none.

    Covers the wire form (`upload_id`, or `url` of an `image` part) and the provider form
    (`image_url.url` of an `image_url` part) that tasks store.
    """
    if part.get("upload_id") is not None:
        return str(part["upload_id"])
    url = part.get("url")
    nested = part.get("image_url")
    if url is None and isinstance(nested, dict):
        url = nested.get("url")
    return upload_in_url(url) if isinstance(url, str) else None


def canonical_part(part: dict[str, Any]) -> dict[str, Any]:
    """A part naming an upload, rewritten to the one form messages are stored in."""
    upload_id = referenced_upload(part)
    if upload_id is None:
        return part
    return {"type": "image", "upload_id": upload_id}


async def owned_upload(owner_id: int, upload_id: str) -> Upload | None:
    """The upload if `owner_id` owns it; None for anyone else's, a malformed or a gone id."""
    if not is_public_id(upload_id):
        return None
    return await Upload.get_or_none(id=upload_id, user_id=owner_id)


async def require_owned(user: User, parts: list[dict[str, Any]]) -> None:
    """404, as for an unknown id, unless every upload `parts` name is the user's own."""
    wanted = {upload_id for part in parts if (upload_id := referenced_upload(part)) is not None}
    well_formed = {upload_id for upload_id in wanted if is_public_id(upload_id)}
    owned: set[str] = set()
    if well_formed:
        owned = set(
            await Upload.filter(id__in=well_formed, user_id=user.id).values_list("id", flat=True)
        )
    missing = sorted(wanted - owned)
    if missing:
        raise NotFound(
            f"Image upload '{missing[0][:32]}' not found: upload it first with "
            "POST /api/v1/uploads and send its id"
        )


async def authorize_parts(user: User, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`parts` with every upload reference in stored form, each one the user's own (else
    404). Every message's parts pass through here before they are stored or queued."""
    await require_owned(user, parts)
    return [canonical_part(part) for part in parts]


async def data_url(owner_id: int, upload_id: str, settings: Settings) -> str | None:
    """The owner's upload as a data URL for a vision model; None if it is not theirs or gone."""
    upload = await owned_upload(owner_id, upload_id)
    if upload is None:
        return None
    try:
        data = await read_upload(upload, settings)
    except NotFound:
        return None
    return f"data:{upload.content_type};base64,{base64.b64encode(data).decode('ascii')}"


async def inline_uploads(
    content: str | list[dict[str, Any]], owner_id: int, settings: Settings
) -> str | list[dict[str, Any]]:
    """Content parts as a provider takes them: upload references of `owner_id`'s uploads
    become data URLs; a reference to an image deleted since the turn was queued, or to
    anyone else's upload, becomes a short note instead of bytes."""
    if isinstance(content, str):
        return content
    inlined = []
    for part in content:
        is_image = part.get("type") in ("image", "image_url")
        upload_id = referenced_upload(part) if is_image else None
        if upload_id is not None:
            data = await data_url(owner_id, upload_id, settings)
            nested = part.get("image_url")
            options = nested if isinstance(nested, dict) else {}
            part = (
                {"type": "text", "text": MISSING_IMAGE}
                if data is None
                else {"type": "image_url", "image_url": {**options, "url": data}}
            )
        inlined.append(part)
    return inlined
