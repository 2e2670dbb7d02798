"""Which OCR options a document's parse gets: the operator's settings, and
`layout_recognize` from the document's parser_config, else its dataset's (the
dataset-level setting), else RAGFlow's default "DeepDOC"; and the parse child's memory
cap for formats OCR reads."""

from __future__ import annotations

from quart.testing import QuartClient

from backend.knowledge.ocr_feed import layout_recognize_of, ocr_options
from backend.knowledge.parsing.ocr_run import OcrOptions, ocr_memory_limit
from backend.models import Document
from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.knowledge import create_dataset, upload_ok

MB = 1024 * 1024


async def test_layout_recognize_comes_from_the_document_then_its_dataset(
    client: QuartClient, owner: Account, settings: Settings
) -> None:
    dataset = await create_dataset(
        client, owner, chunk_method="one", parser_config={"layout_recognize": "Plain Text"}
    )
    [uploaded] = await upload_ok(client, owner, dataset["id"], [("a.txt", b"Some text.")])
    document = await Document.get(id=uploaded["id"])
    # The document copied the dataset's parser_config at upload.
    assert await layout_recognize_of(document) == "Plain Text"
    document.parser_config = {}
    await document.save()
    # Without its own value, the dataset's setting applies.
    assert await layout_recognize_of(document) == "Plain Text"
    assert ocr_options(settings, "Plain Text").text_pages is False
    document.parser_config = {"layout_recognize": True}
    assert await layout_recognize_of(document) is True


def test_operator_settings_reach_the_options(settings: Settings) -> None:
    changed = settings.model_copy(
        update={"ocr_enabled": False, "ocr_page_seconds": 5.0, "ocr_dpi": 300, "ocr_threads": 2}
    )
    options = ocr_options(changed, None)
    assert options == OcrOptions(
        enabled=False,
        text_pages=True,
        page_seconds=5.0,
        dpi=300,
        max_pixels=settings.image_max_pixels,
        max_pages=settings.ocr_max_pages,
        threads=2,
        memory_mb=settings.ocr_memory_mb,
    )


def test_formats_ocr_reads_get_its_memory() -> None:
    options = OcrOptions(memory_mb=1536)
    assert ocr_memory_limit(1024 * MB, "png", options) == 1536 * MB
    assert ocr_memory_limit(1024 * MB, "pdf", options) == 1536 * MB
    assert ocr_memory_limit(2048 * MB, "pdf", options) == 2048 * MB
    assert ocr_memory_limit(1024 * MB, "docx", options) == 1024 * MB
    assert ocr_memory_limit(1024 * MB, "pdf", OcrOptions(enabled=False)) == 1024 * MB
    assert ocr_memory_limit(None, "pdf", options) is None
