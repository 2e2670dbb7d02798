"""OCR of scans and images, parsed in the limited child as the worker does: the text
comes out right (character error rate measured on pages rendered from known text), in
reading order, page by page; each image type, mixed PDFs, blank scans, broken images,
bombs, OCR turned off, the per-page budget and the "OCR page k/n" progress.

Pages are small (a few lines) so each is read in about a second."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpdf import FPDF
from PIL import Image

from backend.errors import PayloadTooLarge, UnsupportedMediaType
from backend.knowledge import formats
from backend.knowledge.parsing.document import ParsedDocument, ParseFailure
from backend.knowledge.parsing.ocr_layout import OcrLine, page_text
from backend.knowledge.parsing.ocr_run import OcrOptions, ocr_text_pages
from backend.knowledge.parsing.parse_progress import ParseProgress
from backend.knowledge.parsing.runner import run_parse_with_limits
from tests.support.images import png_header_only
from tests.support.scanned_pages import (
    CHINESE,
    ENGLISH,
    character_error_rate,
    cjk_font,
    image_file,
    scan,
)

pytestmark = pytest.mark.sqlite_only

GB = 1024 * 1024 * 1024
ENGLISH_TEXT = "\n".join(ENGLISH)
CHINESE_TEXT = "\n".join(CHINESE)


def parsed(path: Path, fmt: str, ocr: OcrOptions | None = None, **kwargs) -> ParsedDocument:
    return run_parse_with_limits(path, fmt, "naive", 60.0, GB, ocr=ocr or OcrOptions(), **kwargs)


def failure(path: Path, fmt: str, ocr: OcrOptions | None = None) -> str:
    with pytest.raises(ParseFailure) as raised:
        parsed(path, fmt, ocr)
    return raised.value.reason


def chinese_scan(**kwargs) -> Image.Image:
    font = cjk_font()
    if font is None:
        pytest.skip("no CJK font (scripts/test.sh installs fonts-wqy-zenhei)")
    return scan(CHINESE, font=font, **kwargs)


def text_pdf(
    path: Path, lines: list[str], picture: Image.Image | None = None, width_mm: float = 150
) -> Path:
    """A born-digital page of `lines`, with `picture` (a scan of other text) below."""
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for number, line in enumerate(lines):
        pdf.text(15, 20 + 6 * number, line)
    if picture is not None:
        pdf.image(picture, x=15, y=60, w=width_mm)
    pdf.output(str(path))
    return path


def test_scanned_pdf_english_and_chinese_within_the_error_rates(tmp_path: Path) -> None:
    english = scan(ENGLISH, dpi=150, angle=1.5, points=11)
    chinese = chinese_scan(dpi=200, angle=-1.0)
    path = tmp_path / "scan.pdf"
    path.write_bytes(image_file([english, chinese], "PDF"))
    steps: list[ParseProgress] = []
    document = parsed(path, "pdf", on_progress=steps.append)
    assert document.page_count == 2
    assert [section.page for section in document.sections] == [1, 2]
    english_text, chinese_text = (section.text for section in document.sections)
    assert character_error_rate(ENGLISH_TEXT, english_text) <= 0.03, english_text
    assert character_error_rate(CHINESE_TEXT, chinese_text, spaces=False) <= 0.05, chinese_text
    # Reading order: line by line, top to bottom.
    assert (
        english_text.index("harbour") < english_text.index("invoice") < english_text.index("agenda")
    )
    assert [step.message for step in steps] == [
        "OCR page 1/2",
        "OCR page 2/2",
        "OCR read 2 of 2 pages",
    ]
    assert [step.budget_s for step in steps] == [60.0, 60.0, None]


def test_paragraphs_and_lines_of_a_scan(tmp_path: Path) -> None:
    lines = [*ENGLISH[:2], "", "", *ENGLISH[2:4]]
    (tmp_path / "letter.png").write_bytes(image_file([scan(lines, dpi=200, angle=0.8)], "PNG"))
    [section] = parsed(tmp_path / "letter.png", "png").sections
    paragraphs = section.text.split("\n\n")
    assert len(paragraphs) == 2, section.text
    assert [len(paragraph.split("\n")) for paragraph in paragraphs] == [2, 2]


def test_mixed_pdf_keeps_its_text_layer_and_reads_its_scans(tmp_path: Path) -> None:
    typed = ["Minutes of the water board, typed.", "Present: the chair and two members."]
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for number, line in enumerate(typed):
        pdf.text(15, 20 + 6 * number, line)
    pdf.add_page()
    pdf.image(scan(ENGLISH[:3], dpi=200, angle=1.0), x=10, y=10, w=150)
    path = tmp_path / "mixed.pdf"
    pdf.output(str(path))
    steps: list[ParseProgress] = []
    document = parsed(path, "pdf", on_progress=steps.append)
    assert document.sections[0].text.splitlines() == typed  # the text layer, exactly
    assert document.sections[1].page == 2
    assert character_error_rate("\n".join(ENGLISH[:3]), document.sections[1].text) <= 0.03
    assert steps[0].message == "OCR page 2/2"  # only the scanned page was read


def test_layout_recognize_reads_the_pictures_of_text_pages(tmp_path: Path) -> None:
    typed = ["Annual report of the harbour, typed text."]
    path = text_pdf(tmp_path / "figure.pdf", typed, scan(ENGLISH[1:2], dpi=200, angle=0.5))
    [deep] = parsed(path, "pdf", OcrOptions(text_pages=True)).sections
    assert deep.text.startswith(typed[0])
    assert "7731" in deep.text and "March" in deep.text
    assert deep.text.count("harbour") == 1  # the text layer is not read twice
    [plain] = parsed(path, "pdf", OcrOptions(text_pages=False)).sections
    assert plain.text.strip() == typed[0]
    # A small picture (a logo: under 4 % of the page) is not worth a page of OCR.
    logo = text_pdf(tmp_path / "logo.pdf", typed, scan(["ACME"], dpi=200), width_mm=25)
    steps: list[ParseProgress] = []
    [section] = parsed(logo, "pdf", OcrOptions(text_pages=True), on_progress=steps.append).sections
    assert section.text.strip() == typed[0] and steps == []


def test_layout_recognize_values() -> None:
    for value in (None, True, "DeepDOC", "gpt-4o@OpenAI"):
        assert ocr_text_pages(value) is True
    for value in (False, "Plain Text", "plain text", ""):
        assert ocr_text_pages(value) is False


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_each_image_type_is_read(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"page.{fmt.lower()}"
    path.write_bytes(image_file([scan(ENGLISH[:3], dpi=200, angle=-1.2)], fmt))
    document = parsed(path, {"JPEG": "jpg"}.get(fmt, fmt.lower()))
    assert document.page_count == 1
    assert character_error_rate("\n".join(ENGLISH[:3]), document.sections[0].text) <= 0.03


def test_multi_page_tiff_gives_a_section_per_page(tmp_path: Path) -> None:
    pages = [scan(ENGLISH[:2], dpi=200), chinese_scan(dpi=200, angle=1.0)]
    path = tmp_path / "fax.tiff"
    path.write_bytes(image_file(pages, "TIFF"))
    document = parsed(path, "tiff")
    assert document.page_count == 2
    assert [section.page for section in document.sections] == [1, 2]
    assert character_error_rate("\n".join(ENGLISH[:2]), document.sections[0].text) <= 0.03
    assert "合同" in document.sections[1].text


def test_blank_scans_fail_with_the_reason(tmp_path: Path) -> None:
    blank = scan([""] * 4, dpi=150)
    (tmp_path / "blank.png").write_bytes(image_file([blank], "PNG"))
    assert "OCR found no text in the PNG image" in failure(tmp_path / "blank.png", "png")
    (tmp_path / "blank.pdf").write_bytes(image_file([blank, blank], "PDF"))
    assert "OCR found no text on the PDF's 2 pages" in failure(tmp_path / "blank.pdf", "pdf")


def test_broken_images_fail_with_the_reason(tmp_path: Path) -> None:
    whole = image_file([scan(ENGLISH[:1], dpi=150)], "PNG")
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    assert "truncated or corrupt" in failure(tmp_path / "cut.png", "png")
    (tmp_path / "noise.jpg").write_bytes(b"\xff\xd8\xff" + b"\x13" * 500)
    assert "damaged" in failure(tmp_path / "noise.jpg", "jpg")


def test_image_bombs_are_refused_before_decoding(tmp_path: Path) -> None:
    limit = OcrOptions(max_pixels=4096 * 4096)
    bomb = png_header_only(10_000, 10_000)
    (tmp_path / "bomb.png").write_bytes(bomb)
    reason = failure(tmp_path / "bomb.png", "png", limit)
    assert "10000x10000" in reason and "IMAGE_MAX_PIXELS" in reason
    # Past Pillow's own limit too (it refuses such headers itself).
    (tmp_path / "huge.png").write_bytes(png_header_only(50_000, 50_000))
    assert "IMAGE_MAX_PIXELS" in failure(tmp_path / "huge.png", "png", limit)
    # The upload is refused first: 413 from the header alone.
    with pytest.raises(PayloadTooLarge) as raised:
        formats.check_content("bomb.png", formats.F.PNG, bomb, tmp_path / "bomb.png", 4096 * 4096)
    assert "10000x10000" in raised.value.message
    with pytest.raises(UnsupportedMediaType):
        formats.check_content("fake.png", formats.F.PNG, b"GIF89a....", tmp_path / "bomb.png")


def test_ocr_turned_off(tmp_path: Path) -> None:
    off = OcrOptions(enabled=False)
    (tmp_path / "scan.pdf").write_bytes(image_file([scan(ENGLISH[:1], dpi=150)], "PDF"))
    assert "OCR_ENABLED" in failure(tmp_path / "scan.pdf", "pdf", off)
    (tmp_path / "page.png").write_bytes(image_file([scan(ENGLISH[:1], dpi=150)], "PNG"))
    assert "OCR_ENABLED" in failure(tmp_path / "page.png", "png", off)


def test_a_page_over_its_budget_stops_the_parse(tmp_path: Path) -> None:
    (tmp_path / "scan.pdf").write_bytes(image_file([scan(ENGLISH, dpi=200)] * 2, "PDF"))
    reason = failure(tmp_path / "scan.pdf", "pdf", OcrOptions(page_seconds=0.05))
    assert reason.startswith("OCR page 1/2 took longer than 0.05 s (OCR_PAGE_SECONDS)")


def line(text: str, left: float, top: float, height: float = 20.0) -> OcrLine:
    return OcrLine(text, left, top, left + 10 * len(text), top + height, 0.99)


def test_reading_order_rows_pieces_and_paragraphs() -> None:
    lines = [
        line("second row", 10, 40),
        line("first row", 10, 10),
        line("right cell", 300, 12),
        line("after a gap", 10, 120),
        line("北京", 10, 150),
        line("的冬天", 40, 151),
    ]
    assert page_text(lines) == "first row right cell\nsecond row\n\nafter a gap\n北京的冬天"
    assert page_text([]) == ""
