"""`parse_document`: a stored file of a known format to sections (or Q/A pairs).

The format comes from the upload's detection (`backend/knowledge/formats.py`), not
guessed again here. Whatever goes wrong inside a library on a bad file becomes a
`ParseFailure` whose reason the user can act on; only a parser bug would escape as
anything else, and the runner (`runner.py`) turns even that into a failure of the one
document. Call it through `run_parse_with_limits` in a worker: libraries can loop or
balloon on hostile input, and only a child process can be stopped for certain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from backend.knowledge.formats import DocumentFormat
from backend.knowledge.parsing.document import ParsedDocument, ParseFailure
from backend.knowledge.parsing.images import parse_image
from backend.knowledge.parsing.json_text import parse_json
from backend.knowledge.parsing.markup import parse_html
from backend.knowledge.parsing.pdf import parse_pdf
from backend.knowledge.parsing.qa import parse_qa
from backend.knowledge.parsing.slides import parse_pptx
from backend.knowledge.parsing.tables import parse_csv, parse_xlsx
from backend.knowledge.parsing.text import parse_markdown, parse_text
from backend.knowledge.parsing.word import parse_docx

F = DocumentFormat
PARSERS: dict[DocumentFormat, Callable[[Path], ParsedDocument]] = {
    F.TXT: parse_text,
    F.MD: parse_markdown,
    F.HTML: parse_html,
    F.PDF: parse_pdf,
    F.DOCX: parse_docx,
    F.PPTX: parse_pptx,
    F.XLSX: parse_xlsx,
    F.CSV: parse_csv,
    F.JSON: parse_json,
    F.PNG: parse_image,
    F.JPG: parse_image,
    F.WEBP: parse_image,
    F.TIFF: parse_image,
}
QA_METHOD = "qa"


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
            return parse_qa(path, fmt)
        return PARSERS[fmt](path)
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
