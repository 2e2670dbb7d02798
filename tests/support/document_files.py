"""Small real documents of every format the parsers read, made by the same libraries
that read them (fpdf2 for PDFs, python-docx, python-pptx, openpyxl), plus hostile ones:
encrypted, damaged, image-only, ZIP and XML bombs."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import docx
import openpyxl
import pptx
from fpdf import FPDF
from msoffcrypto.format.ooxml import OOXMLFile
from PIL import Image


def pdf_file(path: Path, pages: Sequence[Sequence[str]], password: str | None = None) -> Path:
    """A PDF with one page per item of `pages`, each line of text on its own line
    (Latin-1 text: fpdf2's core fonts). `password` encrypts it with a user password."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    if password:
        pdf.set_encryption(owner_password=password + "-owner", user_password=password)
    for lines in pages:
        pdf.add_page()
        for number, line in enumerate(lines):
            pdf.text(15, 20 + 6 * number, line)
    pdf.output(str(path))
    return path


def image_only_pdf(path: Path, pages: int = 2) -> Path:
    """A PDF whose pages are pictures (a scan): no text layer at all."""
    pdf = FPDF()
    picture = Image.new("RGB", (200, 100), "white")
    for _ in range(pages):
        pdf.add_page()
        pdf.image(picture, x=10, y=10, w=100)
    pdf.output(str(path))
    return path


def blank_pdf(path: Path) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.output(str(path))
    return path


def cjk_pdf(path: Path, pages: Sequence[Sequence[str]]) -> Path:
    """A PDF of Chinese (and ASCII) lines. fpdf2 needs a CJK TrueType font to write
    Chinese and none ships with Python packages, so this writes the few PDF objects by
    hand: a Type0 font on Adobe's predefined UniGB-UCS2-H CMap (the non-embedded
    STSong-Light every PDF reader maps), whose codes are the text's UTF-16."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog, tree = add(b""), add(b"")
    cid_font = add(
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light /CIDSystemInfo "
        b"<< /Registry (Adobe) /Ordering (GB1) /Supplement 2 >> /FontDescriptor 4 0 R >>"
    )
    add(
        b"<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 /FontBBox [0 -200 1000 "
        b"900] /ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 /StemV 93 >>"
    )
    cjk_font = add(
        b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UCS2-H "
        b"/DescendantFonts [%d 0 R] >>" % cid_font
    )
    kids = []
    for lines in pages:
        operations = [
            f"BT /F1 12 Tf 50 {750 - 20 * number} Td <{line.encode('utf-16-be').hex()}> Tj ET"
            for number, line in enumerate(lines)
        ]
        stream = "\n".join(operations).encode()
        content = add(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font "
                b"<< /F1 %d 0 R >> >> /Contents %d 0 R >>" % (tree, cjk_font, content)
            )
        )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % kid for kid in kids),
        len(kids),
    )
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


def docx_file(path: Path, blocks: Sequence[tuple[str, object]]) -> Path:
    """A Word document of ("heading", text), ("title", text), ("paragraph", text) and
    ("table", rows) blocks, in order."""
    document = docx.Document()
    for kind, value in blocks:
        if kind == "title":
            document.add_heading(str(value), level=0)
        elif kind == "heading":
            document.add_heading(str(value), level=1)
        elif kind == "paragraph":
            document.add_paragraph(str(value))
        elif kind == "table":
            rows = list(value)  # type: ignore[call-overload]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, row in enumerate(rows):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = str(cell)
    document.save(str(path))
    return path


def pptx_file(path: Path, slides: Sequence[tuple[str, Sequence[str]]]) -> Path:
    """A deck of (title, body lines) slides on the "Title and Content" layout."""
    deck = pptx.Presentation()
    for title, lines in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text_frame.text = "\n".join(lines)
    deck.save(str(path))
    return path


def xlsx_file(path: Path, sheets: dict[str, Sequence[Sequence[object]]]) -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
    workbook.save(str(path))
    return path


def encrypted_office(path: Path, plain: Path, password: str = "secret") -> Path:
    """`plain` (a docx/xlsx/pptx) encrypted with `password` as Office does it: the
    package wrapped in an OLE compound file with an EncryptionInfo stream."""
    with plain.open("rb") as source, path.open("wb") as target:
        OOXMLFile(source).encrypt(password, target)
    return path


def zip_bomb_docx(path: Path, inflated_mb: int) -> Path:
    """A docx whose document part inflates to `inflated_mb` MB of XML whitespace from a
    few hundred KB (the rest of the package is a real document's)."""
    plain = io.BytesIO()
    docx.Document().save(plain)
    with (
        zipfile.ZipFile(plain) as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb,
    ):
        for info in source.infolist():
            if info.filename != "word/document.xml":
                bomb.writestr(info, source.read(info))
        with bomb.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(b'<?xml version="1.0"?><w:document xmlns:w="x">')
            block = b" " * (1024 * 1024)
            for _ in range(inflated_mb):
                part.write(block)
            part.write(b"</w:document>")
    return path


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">'
        % (level, (b"&lol%s;" % (b"" if level == 1 else b"%d" % (level - 1))) * 10)
        for level in range(1, 10)
    )
    + b"]>\n"
)


def xml_bomb_office(path: Path, plain: Path, part: str) -> Path:
    """`plain` with `part` replaced by a billion-laughs entity bomb."""
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            body = source.read(info)
            if info.filename == part:
                root = body.split(b"?>", 1)[-1]
                body = BILLION_LAUGHS + root.replace(b">", b">&lol9;", 1)
            out.writestr(info, body)
    return path
