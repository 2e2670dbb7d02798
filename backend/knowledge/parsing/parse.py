"""`parse_document`: a stored file of a known format to sections (or Q/A pairs).

The format comes from the upload's detection (`backend/knowledge/formats.py`), not
guessed again here. Whatever goes wrong inside a library on a bad file becomes a
`ParseFailure` whose reason the user can act on; only a parser bug would escape as
anything else, and the runner (`runner.py`) turns even that into a failure of the one
document. Call it through `run_parse_with_limits` in a worker: libraries can loop or
balloon on hostile input, and only a child process can be stopped for certain.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from backend.knowledge.formats import DocumentFormat
from backend.knowledge.parsing.document import ParsedDocument, ParseFailure

F = DocumentFormat
PACKAGE = "backend.knowledge.parsing"
# (module, function) per format, imported on first use: the parsing libraries (pypdfium2,
# python-docx, python-pptx, openpyxl, Pillow, the OCR's onnxruntime) cost ~1 s of start-up
# that only the parse child pays, and only for the formats it meets.
PARSERS: dict[DocumentFormat, tuple[str, str]] = {
    F.TXT: ("text", "parse_text"),
    F.MD: ("text", "parse_markdown"),
    F.HTML: ("markup", "parse_html"),
    F.PDF: ("pdf", "parse_pdf"),
    F.DOCX: ("word", "parse_docx"),
    F.PPTX: ("slides", "parse_pptx"),
    F.XLSX: ("tables", "parse_xlsx"),
    F.CSV: ("tables", "parse_csv"),
    F.JSON: ("json_text", "parse_json"),
    F.PNG: ("images", "parse_image"),
    F.JPG: ("images", "parse_image"),
    F.WEBP: ("images", "parse_image"),
    F.TIFF: ("images", "parse_image"),
}
QA_METHOD = "qa"
# Every parser's module, for the parse forkserver to preload (`runner.PRELOAD`): its
# children inherit them and pay a fork per document, not the imports.
PARSER_MODULES = sorted(
    {f"{PACKAGE}.{module}" for module, _ in PARSERS.values()} | {f"{PACKAGE}.qa"}
)


def parser_for(fmt: DocumentFormat) -> Callable[[Path], ParsedDocument]:
    module, function = PARSERS[fmt]
    parser: Callable[[Path], ParsedDocument] = getattr(
        importlib.import_module(f"{PACKAGE}.{module}"), function
    )
    return parser


def parse_document(
    path: Path, fmt: DocumentFormat | str, chunk_method: str = "naive"
) -> ParsedDocument:
    """Parse the file at `path` as `fmt`. The `qa` chunk method reads question/answer
    pairs; every other method reads sections of text. Raises ParseFailure for a file
    that is broken, encrypted, empty, a blank scan, a bomb, or not what its format says."""
    fmt = DocumentFormat(fmt)
    name = fmt.value.upper()
    try:
        if chunk_method == QA_METHOD:
            from backend.knowledge.parsing.qa import parse_qa  # start-up time: see PARSERS

            return parse_qa(path, fmt)
        return parser_for(fmt)(path)
    except ParseFailure:
        raise
    except FileNotFoundError as exc:
        raise ParseFailure("The document's file is missing from storage: upload it again") from exc
    except MemoryError as exc:
        raise ParseFailure(f"The {name} file needs more memory to parse than allowed") from exc
    except RecursionError as exc:
        raise ParseFailure(f"The {name} file is nested too deeply to parse") from exc
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ParseFailure(
            f"The {name} file is damaged or not a valid {name} file: "
            f"{type(exc).__name__}{': ' + detail if detail else ''}"
        ) from exc
