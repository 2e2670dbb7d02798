"""Images as documents (PNG, JPEG, WebP, TIFF with its pages): their text read by OCR.

A photo of a page, a screenshot, a fax as a multi-page TIFF. Each picture (each TIFF
page) is a section with its page number. Decoding is where a small file turns into
gigabytes, so, as for avatars and chat uploads (`services/image_validation.py`), only
Pillow's plugins for these formats may parse the file, and every page's size is read
from its header and checked against IMAGE_MAX_PIXELS before a pixel is decoded; the
number of pages is capped too (OCR_MAX_PAGES). The upload was checked the same way
(`formats.check_content`); this is the parse child's own check, not a trust in it.

A picture without any text OCR can read (a blank scan, a photo) leaves the document
with no text: FAIL with that reason, as any other document with no text does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from backend.knowledge.parsing.document import ParsedDocument, ParseFailure, Section
from backend.knowledge.parsing.ocr_run import ocr_pages, ocr_text, options

OPENERS = ("PNG", "JPEG", "WEBP", "TIFF")
NAMES = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WebP", "TIFF": "TIFF"}
IMAGE_FAILURES = (OSError, SyntaxError, ValueError, EOFError)
BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


def too_large(width: int, height: int, max_pixels: int, page: int) -> ParseFailure:
    where = f" (page {page})" if page > 1 else ""
    return ParseFailure(
        f"The image{where} is {width}x{height} = {width * height} pixels, over the limit of "
        f"{max_pixels} (IMAGE_MAX_PIXELS): refused before decoding; scale it down"
    )


def open_image(path: Path, max_pixels: int) -> Image.Image:
    try:
        return Image.open(path, formats=OPENERS)
    except BOMBS as exc:
        raise ParseFailure(
            f"The image is over the limit of {max_pixels} pixels (IMAGE_MAX_PIXELS): refused "
            f"before decoding ({exc}); scale it down"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ParseFailure("The image is damaged or not a PNG, JPEG, WebP or TIFF image") from exc
    except IMAGE_FAILURES as exc:
        raise ParseFailure(f"The image is damaged: its header cannot be read ({exc})") from exc


def frames(image: Image.Image, max_pixels: int, max_pages: int) -> Iterator[Image.Image]:
    """Each page of the image, its size checked before it is decoded."""
    count = getattr(image, "n_frames", 1)
    if count > max_pages:
        raise ParseFailure(
            f"The image has {count} pages, more than the {max_pages} allowed (OCR_MAX_PAGES): "
            "split it"
        )
    for index in range(count):
        if index:
            image.seek(index)
        width, height = image.size
        if width * height > max_pixels:
            raise too_large(width, height, max_pixels, index + 1)
        yield image


def pixels_of(frame: Image.Image, page: int) -> np.ndarray:
    """The page decoded as RGB, turned upright as its EXIF orientation says."""
    try:
        frame.load()
        upright = (
            ImageOps.exif_transpose(frame) if frame.format in ("JPEG", "MPO", "WEBP") else frame
        )
        return np.asarray(upright.convert("RGB"))
    except IMAGE_FAILURES as exc:
        where = f" page {page}" if page > 1 else ""
        raise ParseFailure(
            f"The image{where} is truncated or corrupt: upload the file again"
        ) from exc


def parse_image(path: Path) -> ParsedDocument:
    settings = options()
    if not settings.enabled:
        raise ParseFailure(
            "The image has no text layer and OCR is turned off on this server (OCR_ENABLED): "
            "nothing to index"
        )
    with open_image(path, settings.max_pixels) as image:
        kind = NAMES.get(str(image.format), str(image.format))
        count = getattr(image, "n_frames", 1)
        pages = frames(image, settings.max_pixels, settings.max_pages)

        def read(page: int) -> str:
            return ocr_text(pixels_of(next(pages), page))

        texts = ocr_pages(list(range(1, count + 1)), count, read)
    sections = tuple(
        Section(texts[page], page=page) for page in sorted(texts) if texts[page].strip()
    )
    if not sections:
        where = "" if count == 1 else f" on any of its {count} pages"
        raise ParseFailure(
            f"OCR found no text in the {kind} image{where} (a blank scan, or a picture "
            "without words?): nothing to index"
        )
    blank = count - len(sections)
    warnings = (f"OCR found no text on {blank} of {count} pages",) if blank else ()
    return ParsedDocument(sections=sections, page_count=count, warnings=warnings)
