"""The upload-time check of an image document (PNG, JPEG, WebP, TIFF): what it is, and
how many pixels each of its pages would decode to, read from headers only.

A few kilobytes can describe a picture of gigapixels, so the limit is checked before
anything is decoded, with the same limit as avatars and chat images (IMAGE_MAX_PIXELS,
`services/image_validation.py`): over it, the upload is a 413 naming the size. Only
Pillow's plugins for these four formats parse the header. A file whose magic matches
but whose header is damaged is accepted, like any other broken document: its parse
then fails with the reason (`parsing/images.py`, which checks the pixels again).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from PIL import Image

from backend.errors import PayloadTooLarge
from backend.settings import get_settings

MAGIC = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
}
OPENERS = ("PNG", "JPEG", "WEBP", "TIFF")
# Pages whose headers are read at upload; a TIFF with more is checked page by page when
# parsed (and refused past OCR_MAX_PAGES).
HEADER_PAGES = 1000
UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def has_magic(suffix: str, head: bytes) -> bool:
    if suffix == "webp":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return head.startswith(MAGIC[suffix])


def too_many_pixels(name: str, width: int, height: int, max_pixels: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"File '{name}': the image is {width}x{height} = {width * height} pixels, over the "
        f"limit of {max_pixels} pixels (IMAGE_MAX_PIXELS); scale it down and upload it again"
    )


def check_pixels(name: str, source: Path | BinaryIO, max_pixels: int | None = None) -> None:
    """413 if a page of the image has more than `max_pixels` pixels (IMAGE_MAX_PIXELS by
    default); a header Pillow cannot read is left for parsing to report."""
    if max_pixels is None:
        max_pixels = get_settings().image_max_pixels
    if not isinstance(source, Path):
        source.seek(0)
    try:
        image = Image.open(source, formats=OPENERS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(
            f"File '{name}': the image is over the limit of {max_pixels} pixels "
            "(IMAGE_MAX_PIXELS); scale it down and upload it again"
        ) from exc
    except UNREADABLE:
        return
    with image:
        try:
            for index in range(min(getattr(image, "n_frames", 1), HEADER_PAGES)):
                if index:
                    image.seek(index)
                width, height = image.size
                if width * height > max_pixels:
                    raise too_many_pixels(name, width, height, max_pixels)
        except UNREADABLE:
            return
