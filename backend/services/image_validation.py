"""Image checks shared by avatars and chat uploads: what is refused, and what decoding costs.

A small file can describe a huge image: a 64 KB WebP of 6000x6000 decodes to over
500 MB (Pillow's WebP path holds about 16 bytes a pixel while decoding). So:

- `open_image` reads only the header, parsing only the formats served, and refuses an
  image over IMAGE_MAX_PIXELS (413) before a single pixel is decoded, whatever its
  format. Pillow's own bomb check only warns below twice its 89-megapixel default.
- Every pixel is then decoded (`decode`), so a truncated or corrupt file is a 400 at
  upload time, never a surprise later. A JPEG is decoded at 1/8 scale (`draft`): that
  still reads all of its data, for 1/64 of the memory.
- Decoding runs in one pool of IMAGE_DECODE_CONCURRENCY threads per process
  (`DecodePool`), so concurrent uploads wait their turn instead of stacking their
  pixels. A pool bounds what is running, not what was started: a request given up on
  (client gone) keeps its thread until the decode ends, where a semaphore around
  `asyncio.to_thread` would be released at once and let the next decode start beside it.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from PIL import Image, UnidentifiedImageError

from backend.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from backend.settings import Settings

# What each served format is stored and sent as. MPO is how Pillow names the JPEGs many
# phone cameras write (a JPEG with extra pictures appended): it is opened as a JPEG.
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
# The only Pillow plugins ever asked to parse untrusted bytes.
OPENERS = ("JPEG", "PNG", "WEBP", "GIF")
SUPPORTED = "send a JPEG, PNG, WebP or GIF image"
CORRUPT = "The image is truncated or corrupt: upload the file again"

T = TypeVar("T")


@dataclass(frozen=True)
class ImageInfo:
    """An image's format and its full size, as its header states them."""

    format: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def too_many_pixels(width: int, height: int, max_pixels: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Image too large: {width}x{height} is {width * height} pixels, over the limit of "
        f"{max_pixels} pixels; scale it down and send it again"
    )


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """The image with only its header read; 415 if it is none of the served formats,
    413 if it has more than `max_pixels` pixels, 400 if the header is broken."""
    try:
        image = Image.open(io.BytesIO(data), formats=OPENERS)
    except UnidentifiedImageError as error:
        raise UnsupportedMediaType(f"Not a readable image: {SUPPORTED}") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise PayloadTooLarge(
            f"Image too large: over the limit of {max_pixels} pixels; scale it down"
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadRequest(CORRUPT) from error
    width, height = image.size
    if image.format not in CONTENT_TYPES:
        image.close()
        raise UnsupportedMediaType(f"Image format {image.format} is not served: {SUPPORTED}")
    if width * height > max_pixels:
        image.close()
        raise too_many_pixels(width, height, max_pixels)
    return image


def decode(image: Image.Image) -> None:
    """Decode the (first frame's) pixels: 400 if the data is truncated or corrupt."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadRequest(CORRUPT) from error


def verify(data: bytes, max_pixels: int) -> ImageInfo:
    """Check that `data` is a whole image of a served format within `max_pixels`; JPEGs
    are decoded at the smallest scale, which still reads every byte of their data."""
    with open_image(data, max_pixels) as image:
        info = ImageInfo(str(image.format), image.width, image.height)
        if info.content_type == "image/jpeg":
            image.draft(None, (1, 1))
        decode(image)
    return info


class DecodePool:
    """The threads images are decoded on: at most `size` decodes at once per process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None
        self.size = 0

    def executor_of(self, size: int) -> ThreadPoolExecutor:
        with self.lock:
            if self.executor is None or self.size != size:
                if self.executor is not None:
                    self.executor.shutdown(wait=False)
                self.executor = ThreadPoolExecutor(size, thread_name_prefix="image-decode")
                self.size = size
            return self.executor

    async def run(self, settings: Settings, work: Callable[..., T], *args: object) -> T:
        executor = self.executor_of(max(1, settings.image_decode_concurrency))
        return await asyncio.get_running_loop().run_in_executor(executor, partial(work, *args))


decode_pool = DecodePool()
