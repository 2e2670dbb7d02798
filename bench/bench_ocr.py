"""OCR benchmark: quality and speed of the ingest worker's OCR next to the library's own
call (RapidOCR()(image)) on the same pages, in one run.

Pages are rendered from known text (English and Chinese lines, tests/support/
scanned_pages.py) at 150, 200 and 300 dpi, turned by up to 2 degrees, with mild noise;
saved as one image-only PDF (each page a JPEG, as Pillow writes them) and as PNGs.

Quality: the character error rate (edit distance / reference length; English with
single spaces, Chinese without whitespace) of
(worker)  `run_parse_with_limits` on the PDF, as the ingest worker parses it: each page
          rendered by PDFium and read in the limited child;
(library) RapidOCR's own call on each page image, its lines joined by newlines.
Targets: worker CER <= 3 % English, <= 5 % Chinese.

Speed: pages/s of (worker) the whole PDF through `run_parse_with_limits` — child start,
engine load, rendering and reading order included — and of the library's own call on the
same pages, with the same number of threads (OCR_THREADS, 1) and with its default (all
cores). The paths alternate for --rounds rounds (which goes first alternates too); each
rate is all its pages over all its seconds, so load elsewhere hits both alike.
Target: worker >= 80 % of the library's call with the same threads.

Usage: python -m bench.bench_ocr [--rounds 2] [--pages-per-dpi 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rapidocr_onnxruntime import RapidOCR

from backend.knowledge.parsing.document import ParsedDocument
from backend.knowledge.parsing.ocr_run import OcrOptions
from backend.knowledge.parsing.runner import run_parse_with_limits
from tests.support.scanned_pages import (
    CHINESE,
    ENGLISH,
    character_error_rate,
    cjk_font,
    image_file,
    scan,
)

GB = 1024 * 1024 * 1024
DPIS = (150, 200, 300)


def pages(per_dpi: int) -> list[tuple[str, str, Image.Image]]:
    """(language, expected text, page) for each dpi, English then Chinese."""
    made = []
    font = cjk_font()
    for dpi in DPIS:
        for copy in range(per_dpi):
            angle = (-1.5, 1.0, 2.0)[(dpi // 50 + copy) % 3]
            made.append(("en", "\n".join(ENGLISH), scan(ENGLISH, dpi=dpi, angle=angle, seed=copy)))
            if font is not None:
                page = scan(CHINESE, dpi=dpi, angle=-angle, seed=copy, font=font)
                made.append(("zh", "\n".join(CHINESE), page))
    return made


def error_rates(expected: list[tuple[str, str]], texts: list[str]) -> dict[str, float]:
    rates: dict[str, list[float]] = {}
    for (language, reference), text in zip(expected, texts, strict=True):
        rate = character_error_rate(reference, text, spaces=language == "en")
        rates.setdefault(language, []).append(rate)
    return {language: float(np.mean(values)) for language, values in rates.items()}


def worker_texts(path: Path) -> tuple[list[str], float]:
    begun = time.perf_counter()
    parsed: ParsedDocument = run_parse_with_limits(
        path, "pdf", "naive", 600.0, GB, ocr=OcrOptions(threads=1)
    )
    seconds = time.perf_counter() - begun
    by_page = {section.page: section.text for section in parsed.sections}
    return [by_page.get(number, "") for number in range(1, parsed.page_count + 1)], seconds


def library_texts(engine: RapidOCR, images: list[np.ndarray]) -> tuple[list[str], float]:
    begun = time.perf_counter()
    texts = []
    for image in images:
        result, _ = engine(image)
        texts.append("\n".join(line[1] for line in result or []))
    return texts, time.perf_counter() - begun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pages-per-dpi", type=int, default=1)
    args = parser.parse_args()

    made = pages(args.pages_per_dpi)
    expected = [(language, text) for language, text, _ in made]
    images = [np.asarray(page.convert("RGB")) for _, _, page in made]
    same_threads = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
    default = RapidOCR()
    for engine in (same_threads, default):  # model load and first run out of the timing
        engine(images[0])
    totals = {"worker": [0, 0.0], "library, 1 thread": [0, 0.0], "library, default": [0, 0.0]}
    quality: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        pdf = Path(folder) / "scans.pdf"
        pdf.write_bytes(image_file([page for _, _, page in made], "PDF"))
        for round_number in range(args.rounds):
            runs = [
                ("worker", lambda: worker_texts(pdf)),
                ("library, 1 thread", lambda: library_texts(same_threads, images)),
                ("library, default", lambda: library_texts(default, images)),
            ]
            if round_number % 2:
                runs.reverse()
            for name, run in runs:
                texts, seconds = run()
                totals[name][0] += len(texts)
                totals[name][1] += seconds
                quality[name] = error_rates(expected, texts)

    print(f"{len(made)} pages ({', '.join(map(str, DPIS))} dpi), {args.rounds} rounds")
    print(f"{'path':<20} {'pages/s':>8} {'CER en':>8} {'CER zh':>8}")
    for name, (count, seconds) in totals.items():
        rates = quality[name]
        print(
            f"{name:<20} {count / seconds:8.2f} {rates.get('en', float('nan')):8.2%} "
            f"{rates.get('zh', float('nan')):8.2%}"
        )
    worker = totals["worker"][0] / totals["worker"][1]
    for name in ("library, 1 thread", "library, default"):
        library = totals[name][0] / totals[name][1]
        print(f"worker / {name}: {worker / library:.0%}")
    target = worker / (totals["library, 1 thread"][0] / totals["library, 1 thread"][1])
    met = target >= 0.8 and quality["worker"].get("en", 1) <= 0.03
    met = met and quality["worker"].get("zh", 0) <= 0.05
    print(
        "targets (CER <= 3 % en, <= 5 % zh; speed >= 80 % of 1 thread):",
        "met" if met else "NOT met",
    )


if __name__ == "__main__":
    main()
