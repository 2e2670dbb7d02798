# ruff: noqa: RUF001 (full-width CJK punctuation is the point of these texts)
"""Scans made in the test from known text: lines rendered at a given dpi, turned a little
(rotation up to 2°), with mild noise, as a scanner or a phone gives them; saved as PNG,
JPEG, WebP, multi-page TIFF, or an image-only PDF (Pillow writes one page a picture, no
text layer). The text is known, so OCR's character error rate can be measured.

Chinese needs a CJK font: `scripts/test.sh` installs Debian's `fonts-wqy-zenhei` when it
is missing; `cjk_font()` is None without one (tests that need it skip).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LATIN_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
)
CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)

ENGLISH = (
    "The harbour master's ledger records 418 ships in 1887.",
    "Quarterly invoice number 7731 is due on 14 March.",
    "Keep the valve closed while the pump is running.",
    "Our library lends maps, atlases and old letters.",
    "The bridge over the river was rebuilt in stone.",
    "Each delegate receives a badge and a printed agenda.",
)
CHINESE = (
    "北京的冬天很冷，但是阳光很好。",
    "这份合同的有效期为三年，自签字之日起生效。",
    "请在会议开始前十分钟到达会场。",
    "仓库每周一上午盘点一次库存。",
    "图书馆周末开放到晚上九点。",
    "新的供水管道将于明年春天完工。",
)


def font_path(candidates: Sequence[str]) -> str | None:
    return next((path for path in candidates if Path(path).exists()), None)


@lru_cache
def cjk_font() -> str | None:
    return font_path(CJK_FONTS)


def scan(
    lines: Sequence[str],
    *,
    dpi: int = 200,
    angle: float = 1.0,
    noise: float = 10.0,
    font: str | None = None,
    points: float = 12.0,
    width_in: float = 6.0,
    seed: int = 7,
) -> Image.Image:
    """A grey page `width_in` inches wide (wider if a line needs it) holding `lines` at
    `points` size, one line a row with a blank row between paragraphs (an empty string in
    `lines`), turned by
    `angle` degrees and with Gaussian noise of `noise` grey levels."""
    font = font or font_path(LATIN_FONTS)
    assert font is not None, "no TrueType font for the scan"
    face = ImageFont.truetype(font, round(points * dpi / 72))
    step = round(points * 1.8 * dpi / 72)
    margin = round(0.5 * dpi)
    height = 2 * margin + step * len(lines)
    longest = max((face.getlength(line) for line in lines), default=0.0)
    page = Image.new("L", (max(round(width_in * dpi), round(longest) + 2 * margin), height), 255)
    draw = ImageDraw.Draw(page)
    for row, line in enumerate(lines):
        if line:
            draw.text((margin, margin + row * step), line, font=face, fill=20)
    page = page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    pixels = np.asarray(page, dtype=np.float32)
    noisy = pixels + np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
    page = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    page.info["dpi"] = (dpi, dpi)
    return page


def image_file(pages: Sequence[Image.Image], fmt: str) -> bytes:
    """The pages as one file: PNG, JPEG or WebP take the first page; TIFF and PDF take
    them all (a multi-page TIFF, an image-only PDF)."""
    buffer = io.BytesIO()
    # Copies: a JPEG or WebP save leaves its encoder settings on the image it saved.
    first, rest = pages[0].copy(), [page.copy() for page in pages[1:]]
    dpi = pages[0].info.get("dpi", (200, 200))
    if fmt == "PDF":
        first.save(buffer, "PDF", save_all=True, append_images=rest, resolution=float(dpi[0]))
    elif fmt == "TIFF":
        first.save(buffer, "TIFF", save_all=True, append_images=rest, compression="tiff_lzw")
    elif fmt == "JPEG":
        first.save(buffer, "JPEG", quality=90, dpi=dpi)
    else:
        first.save(buffer, fmt, dpi=dpi) if fmt == "PNG" else first.save(buffer, fmt, quality=90)
    return buffer.getvalue()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, one row at a time."""
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other))
            )
        previous = current
    return previous[-1]


def normalised(text: str, *, spaces: bool) -> str:
    """Whitespace runs as one space (English), or no whitespace at all (Chinese)."""
    return " ".join(text.split()) if spaces else "".join(text.split())


def character_error_rate(expected: str, got: str, *, spaces: bool = True) -> float:
    reference = normalised(expected, spaces=spaces)
    return edit_distance(reference, normalised(got, spaces=spaces)) / max(len(reference), 1)
