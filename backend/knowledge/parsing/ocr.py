"""OCR of one page image: RapidOCR's PP-OCRv4 models (Chinese and English) on ONNX Runtime.

`rapidocr-onnxruntime` ships its three models (detection, direction, recognition; ~16 MB)
inside the wheel, so OCR works offline, on the CPU, without torch or Paddle. It is the
ONNX port of PaddleOCR that RAGFlow's DeepDoc and QAnything both run.

The library's own call (`RapidOCR()(image)`) detects text lines on the image shrunk to at
most 2000 px a side, then crops each line out of that same shrunk image. Two changes,
measured on scans made from known text (`bench/bench_ocr.py`):

- **Lines are cropped from the full-resolution page**, each scaled (bicubic) so its text
  stands about 48 px tall, the recogniser's input height, and smoothed by a 3x3 Gaussian.
  The library's crops of small text (10-12 pt at 150 dpi) come out about 25 px tall and
  are stretched by its bilinear resize, and the recogniser then drops the spaces between
  English words ("Quarterlyinvoicenumber7731"): 12-15 % character errors. Scaled crops
  fix most of it; the smoothing fixes the rest, left by JPEG blocks and scanner noise
  at 150 dpi (English 0.3 % -> 0 % over 18 test scans, Chinese 1.0 % -> 0.8 %).
- **Detection runs on the page shrunk to at most DETECT_MAX_SIDE px** (1280): its
  feature maps grow with the pixels and at 2000 px needed over 1 GB (std::bad_alloc
  under the parse child's memory cap); text lines are still found at this size, and
  their text is read from the full page anyway. An allocation ONNX Runtime is refused
  all the same becomes a MemoryError: the parse fails with the memory limit's reason.

This module is imported only when a page is OCR'd (`ocr_run.ocr_text`): OpenCV and ONNX
Runtime add about 185 MB to a process's data segment, which a parse child of any other
format would otherwise carry under its memory cap.

ONNX Runtime uses `threads` threads (OCR_THREADS, default 1): the parse child's CPU limit
is counted in CPU seconds, and an ingest worker runs a document per core. The engine
is created once per process, on first use (in the parse child: about 0.3 s).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
from rapidocr_onnxruntime import RapidOCR

from backend.knowledge.parsing.ocr_layout import OcrLine

DETECT_MAX_SIDE = 1280
DETECT_MIN_SIDE = 32
LINE_HEIGHT = 48.0
MAX_UPSCALE = 3.0
MIN_SCORE = 0.5

_engine_lock = threading.Lock()
_engines: dict[int, RapidOCR] = {}


def engine(threads: int = 1) -> RapidOCR:
    with _engine_lock:
        if threads not in _engines:
            _engines[threads] = RapidOCR(
                intra_op_num_threads=threads, inter_op_num_threads=1, print_verbose=False
            )
        return _engines[threads]


def detection_image(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """The page shrunk to at most DETECT_MAX_SIDE a side (padded with white to at least
    DETECT_MIN_SIDE), and the factor from its pixels back to the page's. The detector
    then brings a short side up to 736 px, as the library's own call does."""
    height, width = pixels.shape[:2]
    ratio = min(1.0, DETECT_MAX_SIDE / max(height, width))
    image = pixels
    if ratio < 1.0:
        size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
        image = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    short_h = max(0, DETECT_MIN_SIDE - image.shape[0])
    short_w = max(0, DETECT_MIN_SIDE - image.shape[1])
    if short_h or short_w:
        image = cv2.copyMakeBorder(
            image, 0, short_h, 0, short_w, cv2.BORDER_CONSTANT, value=(255, 255, 255)
        )
    return image, 1.0 / ratio


def box_size(points: np.ndarray) -> tuple[float, float]:
    width = max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3]))
    height = max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2]))
    return float(width), float(height)


def line_crop(pixels: np.ndarray, points: np.ndarray, scale: float) -> np.ndarray:
    """The line inside `points` (a quadrilateral, clockwise from top-left) straightened,
    scaled by `scale` and smoothed; a box much taller than wide (vertical text) turned
    upright."""
    width, height = box_size(points)
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    target = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(points.astype(np.float32), target)
    crop = cv2.warpPerspective(
        pixels, matrix, (out_w, out_h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    crop = cv2.GaussianBlur(crop, (3, 3), 0)
    return np.rot90(crop) if out_h / out_w >= 1.5 else crop


def read_lines(pixels: np.ndarray, threads: int = 1) -> list[OcrLine]:
    """The text lines on a page image (RGB, uint8, height x width x 3), in no
    particular order (`ocr_layout.page_text` orders them)."""
    try:
        return lines_of(engine(threads), pixels)
    except Exception as exc:  # rapidocr wraps ONNX Runtime's errors in its own
        if "bad_alloc" in str(exc):
            raise MemoryError("ONNX Runtime could not allocate") from exc
        raise


def upright_reading(ocr: RapidOCR, crops: list[np.ndarray]) -> list[tuple[str, float]]:
    """Each crop's (text, score). A line the direction classifier calls upside down is
    read both ways and the better score kept: on its own, the classifier turned a
    right-way-up line of a 300-dpi test page over, and the line was lost."""
    _, directions, _ = ocr.text_cls(list(crops))
    recognised = [(str(text), float(score)) for text, score, *_ in ocr.text_rec(crops)[0]]
    flipped = [index for index, (label, _) in enumerate(directions) if label == "180"]
    if flipped:
        turned, _ = ocr.text_rec([np.rot90(crops[index], 2) for index in flipped])
        for index, (text, score, *_) in zip(flipped, turned, strict=True):
            if score > recognised[index][1]:
                recognised[index] = (str(text), float(score))
    return recognised


def lines_of(ocr: RapidOCR, pixels: np.ndarray) -> list[OcrLine]:
    image, back = detection_image(pixels)
    boxes, _ = ocr.text_det(image)
    if boxes is None or len(boxes) == 0:
        return []
    boxes = [np.asarray(box, dtype=np.float32) * back for box in boxes]
    heights = [box_size(box)[1] for box in boxes]
    scale = float(np.clip(LINE_HEIGHT / max(float(np.median(heights)), 1.0), 1.0, MAX_UPSCALE))
    crops = [line_crop(pixels, box, scale) for box in boxes]
    recognised = upright_reading(ocr, crops)
    lines = []
    for box, (text, score) in zip(boxes, recognised, strict=True):
        text = text.strip()
        if text and score >= MIN_SCORE:
            xs, ys = box[:, 0], box[:, 1]
            lines.append(
                OcrLine(
                    text,
                    float(xs.min()),
                    float(ys.min()),
                    float(xs.max()),
                    float(ys.max()),
                    float(score),
                )
            )
    return lines
