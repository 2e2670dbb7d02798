"""OCR over the live stack: a scan and a photo of a page uploaded into a dataset, parsed
by a real ingest worker, found by retrieval; an image bomb refused at upload; a scan
cancelled mid-OCR, and its worker SIGKILLed mid-OCR (the document is parsed again, as
any other). The pages are small: each is read in a second or two."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from tests.support.images import png_header_only
from tests.support.ingest_stack import IngestStack, account_fixtures, stack_fixture, wait_for_run
from tests.support.knowledge import MULTIPART, multipart
from tests.support.scanned_pages import ENGLISH, image_file, scan

FACT = "The sluice keeper's spare key hangs in locker 4418 beside the pump house."
DISTRACTORS = [
    ("keys.txt", b"Spare keys for the office are kept at the front desk."),
    ("pumps.txt", b"The pump house was painted green last spring."),
]


stack = stack_fixture(
    "ocr-live",
    ingest_lease_seconds=5.0,
    ingest_sweep_interval_seconds=1,
    ingest_max_restarts=1,
    ingest_queued_timeout_seconds=1.0,
    image_max_pixels=4096 * 4096,
)


account, client = account_fixtures()


async def new_dataset(client: httpx.AsyncClient, **fields: Any) -> str:
    response = await client.post("/api/v1/datasets", json={"name": "scans", **fields})
    assert response.status_code in (200, 201), response.text
    return response.json()["data"]["id"]


async def upload(
    client: httpx.AsyncClient, dataset_id: str, files: list[tuple[str, bytes]]
) -> httpx.Response:
    return await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart(files),
        headers={"Content-Type": MULTIPART},
    )


async def uploaded_ids(
    client: httpx.AsyncClient, dataset_id: str, files: list[tuple[str, bytes]]
) -> list[str]:
    response = await upload(client, dataset_id, files)
    assert response.status_code == 201, response.text
    return [document["id"] for document in response.json()["data"]]


async def parse(client: httpx.AsyncClient, dataset_id: str, ids: list[str]) -> None:
    response = await client.post(
        f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": ids}
    )
    assert response.status_code == 200, response.text


async def wait_for_ocr_past_first_page(
    client: httpx.AsyncClient, dataset_id: str, document_id: str
) -> dict[str, Any]:
    """The document once OCR has gone past its first page. The log names the first page,
    then one every few seconds (a fast machine may never name the second), so progress
    beyond what it was when the first page was named counts too: it moves page by page."""
    first_progress: float | None = None
    for _ in range(600):
        document = await wait_for_run(client, dataset_id, document_id, runs=("RUNNING",))
        named = [int(n) for n in re.findall(r"OCR page (\d+)/", document["progress_msg"])]
        if named and max(named) >= 2:
            return document
        if named and first_progress is None:
            first_progress = document["progress"]
        elif first_progress is not None and document["progress"] > first_progress:
            return document
        await asyncio.sleep(0.05)
    raise AssertionError(f"OCR never passed its first page: {document['progress_msg']}")


def scanned_pdf(pages: int) -> bytes:
    return image_file([scan(ENGLISH[:2], dpi=150, seed=page) for page in range(pages)], "PDF")


async def test_a_scan_and_a_photo_are_read_and_found_by_retrieval(
    client: httpx.AsyncClient,
) -> None:
    dataset_id = await new_dataset(client)
    photo = image_file([scan([FACT], dpi=200, angle=1.2)], "JPEG")
    pdf = image_file([scan(ENGLISH[:2], dpi=150), scan(ENGLISH[2:4], dpi=150, angle=-1)], "PDF")
    ids = await uploaded_ids(
        client, dataset_id, [("locker.jpg", photo), ("ledger.pdf", pdf), *DISTRACTORS]
    )
    await parse(client, dataset_id, ids)
    documents = [await wait_for_run(client, dataset_id, document_id) for document_id in ids]
    failed = [d["progress_msg"] for d in documents if d["run"] != "DONE"]
    assert not failed, "\n\n".join(failed)
    photo_doc, pdf_doc = documents[:2]
    assert photo_doc["type"] == "visual" and pdf_doc["type"] == "pdf"
    log = pdf_doc["progress_msg"]
    assert "OCR page 1/2." in log and "OCR page 2/2." in log, log
    assert "OCR read 2 of 2 pages in" in log and "Parsed 2 pages" in log
    assert log.index("OCR page 2/2.") < log.index("OCR read") < log.index("Parsed 2 pages")

    response = await client.post(
        "/api/v1/retrieval",
        json={"question": "Which locker holds the spare key?", "dataset_ids": [dataset_id]},
    )
    assert response.status_code == 200, response.text
    top = response.json()["data"]["chunks"][0]
    assert top["document_id"] == ids[0]
    assert "locker 4418" in top["content"], top["content"]


async def test_an_image_bomb_is_refused_at_upload(client: httpx.AsyncClient) -> None:
    dataset_id = await new_dataset(client)
    response = await upload(client, dataset_id, [("bomb.png", png_header_only(10_000, 10_000))])
    assert response.status_code == 413, response.text
    assert "10000x10000" in response.json()["message"]
    listed = await client.get(f"/api/v1/datasets/{dataset_id}/documents")
    assert listed.json()["data"]["docs"] == []


async def test_cancel_mid_ocr_stops_it_and_the_worker_goes_on(
    client: httpx.AsyncClient,
) -> None:
    dataset_id = await new_dataset(client)
    [document_id] = await uploaded_ids(client, dataset_id, [("long.pdf", scanned_pdf(8))])
    await parse(client, dataset_id, [document_id])
    await wait_for_ocr_past_first_page(client, dataset_id, document_id)
    stopped = await client.request(
        "DELETE", f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": [document_id]}
    )
    assert stopped.status_code == 200, stopped.text
    await asyncio.sleep(1.5)
    document = await wait_for_run(client, dataset_id, document_id, runs=("CANCEL",))
    assert "OCR page 8/8" not in document["progress_msg"]
    assert document["chunk_count"] == 0
    # The worker is free again: a small document goes through.
    [small] = await uploaded_ids(client, dataset_id, [("after.txt", b"After the cancel.")])
    await parse(client, dataset_id, [small])
    assert (await wait_for_run(client, dataset_id, small, within=30))["run"] == "DONE"


async def test_a_worker_killed_mid_ocr_leaves_the_scan_to_be_read_again(
    stack: IngestStack, client: httpx.AsyncClient
) -> None:
    dataset_id = await new_dataset(client)
    [document_id] = await uploaded_ids(client, dataset_id, [("killed.pdf", scanned_pdf(3))])
    await parse(client, dataset_id, [document_id])
    try:
        await wait_for_ocr_past_first_page(client, dataset_id, document_id)
        for worker in stack.workers:
            if worker.process.poll() is None:
                stack.kill(worker)
        await stack.start_worker()
        document = await wait_for_run(client, dataset_id, document_id, within=90)
    finally:
        if not any(worker.process.poll() is None for worker in stack.workers):
            await stack.start_worker()
    assert document["run"] == "DONE", document["progress_msg"]
    log = document["progress_msg"]
    assert "stopped unexpectedly; parsing it again (restart 1 of 1)" in log
    assert log.count("OCR page 1/3.") == 2 and "OCR read 3 of 3 pages" in log
    assert document["chunk_count"] >= 1
