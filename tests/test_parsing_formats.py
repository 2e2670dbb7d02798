# ruff: noqa: RUF001 (full-width CJK punctuation is the point of these texts)
"""Each format parsed from a small real file: the text comes out right, in order, with
its positions (pages, slides), structure (headings) and CJK text intact."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from backend.knowledge.chunking import chunk_document
from backend.knowledge.parsing import ParseFailure, parse_document
from tests.support.document_files import (
    cjk_pdf,
    docx_file,
    pdf_file,
    pptx_file,
    xlsx_file,
)

# Library code: nothing here touches the SQL database.
pytestmark = pytest.mark.sqlite_only


def texts(parsed) -> list[str]:
    return [section.text for section in parsed.sections]


def test_pdf_text_layer_with_page_numbers(tmp_path: Path) -> None:
    path = pdf_file(
        tmp_path / "report.pdf",
        [["Quarterly report", "Revenue grew by 12 percent."], ["Second page: outlook"], []],
    )
    parsed = parse_document(path, "pdf", "naive")
    assert parsed.page_count == 3
    assert [section.page for section in parsed.sections] == [1, 2]  # the blank page 3 dropped
    assert parsed.warnings == ("1 of 3 pages have no text layer (images only?) and were skipped",)
    assert texts(parsed) == [
        "Quarterly report\nRevenue grew by 12 percent.",
        "Second page: outlook",
    ]


def test_pdf_with_chinese_text(tmp_path: Path) -> None:
    path = cjk_pdf(tmp_path / "中文.pdf", [["中华人民共和国成立了。"], ["第二页：机器学习与检索"]])
    parsed = parse_document(path, "pdf", "naive")
    assert texts(parsed) == ["中华人民共和国成立了。", "第二页：机器学习与检索"]
    assert [section.page for section in parsed.sections] == [1, 2]


def test_pdf_encrypted_with_an_empty_user_password_still_reads(tmp_path: Path) -> None:
    """Owner-only protection (printing/copying limits) is no reason to refuse."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="")
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.text(15, 20, "Readable without a password")
    pdf.output(str(tmp_path / "owner.pdf"))
    parsed = parse_document(tmp_path / "owner.pdf", "pdf", "naive")
    assert texts(parsed) == ["Readable without a password"]


def test_txt_utf8_and_legacy_chinese_encodings(tmp_path: Path) -> None:
    text = "知识库把文档切成块。\n检索时先分词，再按相关度排序。\nSluice 支持中文和英文。\n"
    (tmp_path / "utf8.txt").write_text(text, encoding="utf-8")
    (tmp_path / "gb.txt").write_bytes(text.encode("gb18030"))
    (tmp_path / "bom16.txt").write_bytes(text.encode("utf-16"))
    for name in ("utf8.txt", "gb.txt", "bom16.txt"):
        parsed = parse_document(tmp_path / name, "txt", "naive")
        assert parsed.text == text, name
    traditional = "知識庫把文件切成塊。\n檢索時先分詞，再按相關度排序。\n"
    (tmp_path / "big5.txt").write_bytes(traditional.encode("big5"))
    assert parse_document(tmp_path / "big5.txt", "txt", "naive").text == traditional


def test_txt_newlines_normalised(tmp_path: Path) -> None:
    (tmp_path / "dos.txt").write_bytes(b"line one\r\nline two\rline three")
    assert parse_document(tmp_path / "dos.txt", "txt").text == "line one\nline two\nline three"


def test_markdown_headings_are_sections_but_not_inside_code(tmp_path: Path) -> None:
    (tmp_path / "guide.md").write_text(
        "Intro text.\n# Install\nRun pip.\n```\n# not a heading\n```\n## Usage\nCall it.\n",
        encoding="utf-8",
    )
    parsed = parse_document(tmp_path / "guide.md", "md", "naive")
    assert [(s.text, s.heading) for s in parsed.sections] == [
        ("Intro text.", False),
        ("# Install", True),
        ("Run pip.\n```\n# not a heading\n```", False),
        ("## Usage", True),
        ("Call it.\n", False),
    ]


def test_html_visible_text_headings_and_blocks(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        "<html><head><title>Guide</title><style>p{color:red}</style>"
        "<script>var hidden = 'secret';</script></head><body>"
        "<h1>Getting   started</h1><p>First <b>bold</b>\n   paragraph.</p>"
        "<noscript>enable js</noscript><ul><li>one</li><li>two</li></ul>"
        "<h2>Details</h2><div>Line<br>break</div><script>alert(1)</script>"
        "<template><p>never shown</p></template></body></html>",
        encoding="utf-8",
    )
    parsed = parse_document(tmp_path / "page.html", "html", "naive")
    assert [(s.text, s.heading) for s in parsed.sections] == [
        ("Guide", True),
        ("Getting started", True),
        ("First bold paragraph.\none\ntwo", False),
        ("Details", True),
        ("Line\nbreak", False),
    ]
    assert "secret" not in parsed.text and "alert" not in parsed.text
    assert "never shown" not in parsed.text and "enable js" not in parsed.text


C_LISTING = '#include <stdio.h>\n\nint main(void) {\n    printf("hi");\n    return 0;\n}'


def test_html_preformatted_text_keeps_its_lines(tmp_path: Path) -> None:
    (tmp_path / "code.html").write_text(
        f"<html><body><p>A   listing:</p><pre><code>{html.escape(C_LISTING)}</code></pre>"
        "<p>Run <code>make</code> then <code>a\n  b</code> done.</p></body></html>",
        encoding="utf-8",
    )
    parsed = parse_document(tmp_path / "code.html", "html", "naive")
    assert texts(parsed) == ["A listing:", C_LISTING, "Run make then", "a\n  b", "done."]
    [chunk] = [chunk.content for chunk in chunk_document(parsed) if "printf" in chunk.content]
    assert C_LISTING in chunk


def test_html_tables_become_rows_as_word_tables_do(tmp_path: Path) -> None:
    (tmp_path / "table.html").write_text(
        "<html><body><h2>Staff</h2><table><thead><tr><th>Name</th><th>Role</th></tr></thead>"
        "<tbody><tr><td>Ada <b>Lovelace</b></td><td>Engineer</td></tr>"
        "<tr><td>Grace<br>Hopper</td><td><p>Rear</p><p>Admiral</p></td></tr>"
        "<tr><td></td><td>Unnamed</td></tr></tbody></table><p>After.</p></body></html>",
        encoding="utf-8",
    )
    parsed = parse_document(tmp_path / "table.html", "html", "naive")
    assert [(s.text, s.heading) for s in parsed.sections] == [
        ("Staff", True),
        ("Name: Ada Lovelace; Role: Engineer", False),
        ("Name: Grace Hopper; Role: Rear Admiral", False),
        ("Role: Unnamed", False),
        ("After.", False),
    ]
    word = docx_file(
        tmp_path / "table.docx",
        [("table", [["Name", "Role"], ["Ada Lovelace", "Engineer"]])],
    )
    [word_row] = texts(parse_document(word, "docx", "naive"))
    assert word_row == texts(parsed)[1]


def test_html_markers_in_the_page_itself_are_text(tmp_path: Path) -> None:
    (tmp_path / "odd.html").write_text(
        "<p>&#xe003;7&#xe004; and &#xe000;</p><table><tr><td>&#xe003;0&#xe004;</td></tr></table>",
        encoding="utf-8",
    )
    parsed = parse_document(tmp_path / "odd.html", "html", "naive")
    assert texts(parsed) == ["7 and", "0"]  # no marker of Sluice's, whatever the page says


def test_html_in_a_legacy_encoding(tmp_path: Path) -> None:
    html = "<html><body><p>中文网页的正文内容，用于测试编码。</p></body></html>"
    (tmp_path / "gbk.html").write_bytes(html.encode("gbk"))
    parsed = parse_document(tmp_path / "gbk.html", "html", "naive")
    assert parsed.text == "中文网页的正文内容，用于测试编码。"


def test_docx_paragraphs_headings_and_tables_in_order(tmp_path: Path) -> None:
    path = docx_file(
        tmp_path / "handbook.docx",
        [
            ("title", "Handbook"),
            ("paragraph", "Welcome to the team."),
            ("heading", "Holidays"),
            ("paragraph", "You get 25 days."),
            ("table", [["Name", "Role"], ["Ada", "Engineer"], ["Grace", "Admiral"]]),
            ("paragraph", "中文段落也能读。"),
        ],
    )
    parsed = parse_document(path, "docx", "naive")
    assert [(s.text, s.heading) for s in parsed.sections] == [
        ("Handbook", True),
        ("Welcome to the team.", False),
        ("Holidays", True),
        ("You get 25 days.", False),
        ("Name: Ada; Role: Engineer", False),
        ("Name: Grace; Role: Admiral", False),
        ("中文段落也能读。", False),
    ]
    assert parsed.page_count is None


def test_pptx_slide_texts_with_slide_numbers(tmp_path: Path) -> None:
    path = pptx_file(
        tmp_path / "deck.pptx",
        [("Roadmap", ["Ship parsing", "Ship chunking"]), ("路线图", ["检索与重排"])],
    )
    parsed = parse_document(path, "pptx", "naive")
    assert parsed.page_count == 2
    assert [(s.text, s.page, s.heading) for s in parsed.sections] == [
        ("Roadmap", 1, True),
        ("Ship parsing\nShip chunking", 1, False),
        ("路线图", 2, True),
        ("检索与重排", 2, False),
    ]


def test_xlsx_rows_as_header_value_lines_per_sheet(tmp_path: Path) -> None:
    import datetime as dt

    path = xlsx_file(
        tmp_path / "people.xlsx",
        {
            "Staff": [
                [None, None],
                ["Name", "Born", "Score"],
                ["Linus", dt.datetime(1969, 12, 28), 9.0],
                ["Grace", dt.datetime(1906, 12, 9, 8, 15), 8.5],
                ["Alan", None, 7],
                [None, None, None],
            ],
            "空表": [],
            "城市": [["城市", "人口"], ["北京", 21893095]],
        },
    )
    parsed = parse_document(path, "xlsx", "naive")
    assert [(s.text, s.heading) for s in parsed.sections] == [
        ("Sheet: Staff", True),
        ("Name: Linus; Born: 1969-12-28; Score: 9", False),
        ("Name: Grace; Born: 1906-12-09T08:15:00; Score: 8.5", False),
        ("Name: Alan; Score: 7", False),
        ("Sheet: 城市", True),
        ("城市: 北京; 人口: 21893095", False),
    ]


def test_csv_dialects_and_quoted_newlines(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        'product,notes\nWidget,"two\nlines"\nGadget,plain\n', encoding="utf-8"
    )
    (tmp_path / "b.csv").write_bytes("产品;说明\n茶杯;白色\n".encode("gb18030"))
    assert texts(parse_document(tmp_path / "a.csv", "csv")) == [
        "product: Widget; notes: two lines",
        "product: Gadget; notes: plain",
    ]
    assert texts(parse_document(tmp_path / "b.csv", "csv")) == ["产品: 茶杯; 说明: 白色"]


def test_json_flattened_to_path_value_lines(tmp_path: Path) -> None:
    value = {
        "title": "Config",
        "owner": {"name": "Ada", "langs": ["en", "中文"], "active": True, "nothing": None},
        "items": [{"id": 1, "tags": []}, {"id": 2.5}],
    }
    (tmp_path / "c.json").write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    assert texts(parse_document(tmp_path / "c.json", "json")) == [
        "title: Config",
        "owner.name: Ada\nowner.langs[0]: en\nowner.langs[1]: 中文\nowner.active: true",
        "items[0].id: 1\nitems[1].id: 2.5",
    ]


def test_qa_from_csv_xlsx_txt_and_markdown(tmp_path: Path) -> None:
    (tmp_path / "faq.csv").write_text(
        "Question,Answer\nWhat is Sluice?,A chat backend.\nlonely cell\n", encoding="utf-8"
    )
    xlsx_file(
        tmp_path / "faq.xlsx", {"FAQ": [["问题", "答案"], ["退货政策？", "七天无理由退货。"]]}
    )
    (tmp_path / "faq.txt").write_text(
        "How fast?\tVery fast.\nIt parses hundreds of pages a second.\nWho?\tUs.\n",
        encoding="utf-8",
    )
    (tmp_path / "faq.md").write_text("# Price?\nFree.\n## Licence?\nMIT.\n", encoding="utf-8")

    csv_parsed = parse_document(tmp_path / "faq.csv", "csv", "qa")
    assert [(p.question, p.answer) for p in csv_parsed.qa_pairs] == [
        ("What is Sluice?", "A chat backend.")
    ]
    assert csv_parsed.sections == ()
    assert "1 rows or lines were not question/answer pairs: 3" in csv_parsed.warnings[0]
    assert [
        (p.question, p.answer) for p in parse_document(tmp_path / "faq.xlsx", "xlsx", "qa").qa_pairs
    ] == [("退货政策？", "七天无理由退货。")]
    assert [
        (p.question, p.answer) for p in parse_document(tmp_path / "faq.txt", "txt", "qa").qa_pairs
    ] == [
        ("How fast?", "Very fast.\nIt parses hundreds of pages a second."),
        ("Who?", "Us."),
    ]
    assert [
        (p.question, p.answer) for p in parse_document(tmp_path / "faq.md", "md", "qa").qa_pairs
    ] == [
        ("Price?", "Free."),
        ("Licence?", "MIT."),
    ]


def test_qa_refuses_formats_without_pairs_and_files_without_any(tmp_path: Path) -> None:
    path = pdf_file(tmp_path / "a.pdf", [["text"]])
    with pytest.raises(ParseFailure, match="'qa' chunk method reads question/answer pairs"):
        parse_document(path, "pdf", "qa")
    (tmp_path / "none.txt").write_text("no tabs here\nat all\n", encoding="utf-8")
    with pytest.raises(ParseFailure, match="No question/answer pairs found"):
        parse_document(tmp_path / "none.txt", "txt", "qa")


def test_pptx_tables_and_grouped_shapes(tmp_path: Path) -> None:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    slide.shapes.title.text = "Numbers"
    table = slide.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(4), Inches(2)).table
    for r, row in enumerate([["City", "Pop"], ["Paris", "2M"], ["Rome", "3M"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    group = slide.shapes.add_group_shape()
    box = group.shapes.add_textbox(Inches(1), Inches(5), Inches(2), Inches(1))
    box.text_frame.text = "grouped note"
    deck.save(str(tmp_path / "t.pptx"))
    parsed = parse_document(tmp_path / "t.pptx", "pptx")
    assert [(s.text, s.page) for s in parsed.sections] == [
        ("Numbers", 1),
        ("City: Paris; Pop: 2M\nCity: Rome; Pop: 3M\ngrouped note", 1),
    ]
