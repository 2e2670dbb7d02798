"""Small real images for tests that upload or send them, and small files that describe
huge ones (decompression bombs)."""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

from PIL import Image


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions in a few bytes, as a decompression bomb does."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@lru_cache
def webp_bomb(side: int = 6000) -> bytes:
    """A whole, valid lossless WebP of side x side white pixels: a few dozen bytes that
    decode to over 500 MB in Pillow."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), "white").save(buffer, "WEBP", lossless=True, method=0)
    return buffer.getvalue()
