"""Files that cannot be parsed fail with a reason the user can act on, fast and within
bounded memory; the runner stops parsers that loop, balloon or crash."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import pytest

from backend.knowledge.parsing import ParseFailure, parse_document, run_parse_with_limits
from backend.knowledge.parsing.packages import PackageLimits, check_package
from tests.support.document_files import (
    blank_pdf,
    cjk_pdf,
    docx_file,
    encrypted_office,
    image_only_pdf,
    pdf_file,
    pptx_file,
    xlsx_file,
    xml_bomb_office,
    zip_bomb_docx,
)
from tests.support.hostile_parsers import (
    buggy_parser,
    crashing_parser,
    looping_parser,
    memory_hog_parser,
)
from tests.support.knowledge import COMPOUND_FILE

# Library code: nothing here touches the SQL database.
pytestmark = pytest.mark.sqlite_only

MB = 1024 * 1024


def failure(path: Path, fmt: str, chunk_method: str = "naive") -> str:
    with pytest.raises(ParseFailure) as caught:
        parse_document(path, fmt, chunk_method)
    return caught.value.reason


def test_password_protected_pdf(tmp_path: Path) -> None:
    path = pdf_file(tmp_path / "locked.pdf", [["top secret"]], password="hunter2")
    assert "password-protected" in failure(path, "pdf")


def test_damaged_pdf(tmp_path: Path) -> None:
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2048))
    assert failure(tmp_path / "broken.pdf", "pdf").startswith("The PDF is damaged")


def test_pdf_without_pages_blank_and_image_only(tmp_path: Path) -> None:
    # PDFium refuses a page tree without pages as malformed.
    assert "damaged" in failure(cjk_pdf(tmp_path / "nopages.pdf", []), "pdf")
    assert "contains no text" in failure(blank_pdf(tmp_path / "blank.pdf"), "pdf")
    # Blank pictures (a blank scan): OCR reads them and finds nothing (tests/test_ocr.py).
    reason = failure(image_only_pdf(tmp_path / "scan.pdf"), "pdf")
    assert reason.startswith("OCR found no text on the PDF's 2 pages (blank scans")


def test_empty_and_blank_text_files(tmp_path: Path) -> None:
    for fmt in ("txt", "md", "html", "csv", "json"):
        (tmp_path / f"empty.{fmt}").write_bytes(b"")
        assert "contains no text" in failure(tmp_path / f"empty.{fmt}", fmt), fmt
    (tmp_path / "blank.txt").write_text(" \n\t\n")
    assert "contains no text" in failure(tmp_path / "blank.txt", "txt")
    (tmp_path / "hollow.html").write_text("<html><script>only()</script></html>")
    assert "contains no text" in failure(tmp_path / "hollow.html", "html")
    (tmp_path / "null.json").write_text('{"a": null, "b": []}')
    assert "contains no text" in failure(tmp_path / "null.json", "json")


def test_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"a": ')
    assert "not valid JSON" in failure(tmp_path / "bad.json", "json")
    (tmp_path / "deep.json").write_text("[" * 5000 + "]" * 5000)
    assert "not valid JSON" in failure(tmp_path / "deep.json", "json")


@pytest.mark.parametrize("fmt", ["docx", "xlsx", "pptx"])
def test_password_protected_office_files(tmp_path: Path, fmt: str) -> None:
    plain = {
        "docx": lambda p: docx_file(p, [("paragraph", "secret plans")]),
        "xlsx": lambda p: xlsx_file(p, {"S": [["a", "b"], [1, 2]]}),
        "pptx": lambda p: pptx_file(p, [("Secret", ["plans"])]),
    }[fmt](tmp_path / f"plain.{fmt}")
    locked = encrypted_office(tmp_path / f"locked.{fmt}", plain)
    assert "password-protected" in failure(locked, fmt)


def test_damaged_office_files(tmp_path: Path) -> None:
    plain = docx_file(tmp_path / "plain.docx", [("paragraph", "text")])
    (tmp_path / "cut.docx").write_bytes(plain.read_bytes()[:400])
    assert "damaged" in failure(tmp_path / "cut.docx", "docx")
    (tmp_path / "ole.xlsx").write_bytes(COMPOUND_FILE)
    assert "damaged" in failure(tmp_path / "ole.xlsx", "xlsx")
    with zipfile.ZipFile(tmp_path / "hollow.pptx", "w") as package:
        package.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        package.writestr("ppt/presentation.xml", "<document/>")
    assert "not a valid PPTX" in failure(tmp_path / "hollow.pptx", "pptx")


def test_office_files_without_text(tmp_path: Path) -> None:
    assert "contains no text" in failure(docx_file(tmp_path / "e.docx", []), "docx")
    assert "contains no text" in failure(xlsx_file(tmp_path / "e.xlsx", {"S": []}), "xlsx")
    assert "contains no text" in failure(pptx_file(tmp_path / "e.pptx", [("", [])]), "pptx")


def test_zip_bomb_docx_fails_fast_within_bounded_memory(tmp_path: Path) -> None:
    """300 MB of XML in a 340 KB docx: refused from the ZIP directory, before anything is
    inflated. The child's memory is capped far below what parsing it would take, so
    without the check the reason would be memory, not the bomb."""
    bomb = zip_bomb_docx(tmp_path / "bomb.docx", inflated_mb=300)
    assert bomb.stat().st_size < 2 * MB
    started = time.monotonic()
    with pytest.raises(ParseFailure) as caught:
        run_parse_with_limits(bomb, "docx", "naive", timeout_s=30, memory_limit=256 * MB)
    assert time.monotonic() - started < 10
    assert "would inflate to 300 MB" in caught.value.reason
    assert "ZIP bomb" in caught.value.reason


def test_zip_bomb_under_the_total_cap_is_caught_by_its_ratio(tmp_path: Path) -> None:
    bomb = zip_bomb_docx(tmp_path / "ratio.docx", inflated_mb=20)
    reason = failure(bomb, "docx")
    assert "compressed" in reason and "ZIP bomb" in reason


def test_too_many_entries(tmp_path: Path) -> None:
    plain = docx_file(tmp_path / "plain.docx", [("paragraph", "text")])
    with pytest.raises(ParseFailure, match=r"holds \d+ files inside"):
        check_package(plain, "The Word document", PackageLimits(max_entries=3))


@pytest.mark.parametrize(
    ("fmt", "part"), [("docx", "word/document.xml"), ("xlsx", "xl/worksheets/sheet1.xml")]
)
def test_xml_entity_bombs_are_refused(tmp_path: Path, fmt: str, part: str) -> None:
    plain = (
        docx_file(tmp_path / "plain.docx", [("paragraph", "text")])
        if fmt == "docx"
        else xlsx_file(tmp_path / "plain.xlsx", {"Sheet": [["a"], [1]]})
    )
    bomb = xml_bomb_office(tmp_path / f"bomb.{fmt}", plain, part)
    started = time.monotonic()
    reason = failure(bomb, fmt)
    assert "XML bomb" in reason
    assert time.monotonic() - started < 5


def test_a_dtd_pushed_past_the_sniffed_prolog_is_refused(tmp_path: Path) -> None:
    plain = docx_file(tmp_path / "plain.docx", [("paragraph", "text")])
    padded = tmp_path / "padded.docx"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(padded, "w") as out:
        for info in source.infolist():
            body = source.read(info)
            if info.filename == "word/document.xml":
                declaration, _, rest = body.partition(b"?>")
                padding = b"<!--" + b"x" * 8000 + b"-->"
                dtd = b'<!DOCTYPE d [<!ENTITY a "aaaaaaaa">]>'
                body = declaration + b"?>" + padding + dtd + rest
            out.writestr(info, body)
    assert "XML bomb" in failure(padded, "docx")


# -- the runner ---------------------------------------------------------------------------


def test_runner_returns_what_the_parser_returns(tmp_path: Path) -> None:
    path = pdf_file(tmp_path / "ok.pdf", [["page one"], ["page two"]])
    assert run_parse_with_limits(path, "pdf", "naive", timeout_s=30) == parse_document(path, "pdf")


def test_runner_passes_the_parse_failure_on(tmp_path: Path) -> None:
    path = pdf_file(tmp_path / "locked.pdf", [["x"]], password="pw")
    with pytest.raises(ParseFailure, match="password-protected"):
        run_parse_with_limits(path, "pdf", "naive", timeout_s=30)


def test_runner_kills_a_looping_parser_at_its_deadline(tmp_path: Path) -> None:
    path = tmp_path / "loop.pdf"
    path.write_bytes(b"%PDF-1.4")
    started = time.monotonic()
    with pytest.raises(ParseFailure, match=r"took longer than 1\.5 s"):
        run_parse_with_limits(path, "pdf", "naive", timeout_s=1.5, target=looping_parser)
    assert time.monotonic() - started < 6
    child = int((tmp_path / "started").read_text())
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left spinning
        os.kill(child, 0)


def test_runner_stops_a_parser_that_allocates_without_end(tmp_path: Path) -> None:
    path = tmp_path / "hog.txt"
    path.write_text("x")
    with pytest.raises(ParseFailure, match="more memory than the 300 MB allowed"):
        run_parse_with_limits(
            path, "txt", "naive", timeout_s=30, memory_limit=300 * MB, target=memory_hog_parser
        )


def test_runner_survives_a_crashing_or_buggy_parser(tmp_path: Path) -> None:
    path = tmp_path / "crash.txt"
    path.write_text("x")
    with pytest.raises(ParseFailure, match="crashed"):
        run_parse_with_limits(path, "txt", "naive", timeout_s=30, target=crashing_parser)
    with pytest.raises(ParseFailure, match=r"parser failed on this file \(KeyError"):
        run_parse_with_limits(path, "txt", "naive", timeout_s=30, target=buggy_parser)
    # and the next document parses as usual
    assert run_parse_with_limits(path, "txt", "naive", timeout_s=30).text == "x"


async def test_runner_from_worker_threads_concurrently(tmp_path: Path) -> None:
    """How the ingest worker calls it: off the event loop, several documents at once."""
    import asyncio

    paths = [pdf_file(tmp_path / f"d{n}.pdf", [[f"document {n}"]]) for n in range(3)]
    parsed = await asyncio.gather(
        *(asyncio.to_thread(run_parse_with_limits, p, "pdf", "naive", 30) for p in paths)
    )
    assert [doc.text for doc in parsed] == ["document 0", "document 1", "document 2"]
