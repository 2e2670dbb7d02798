"""Document run states (the seam the ingest worker writes through) and what deleting
does to a document being parsed: its job's writes become no-ops, its indexed chunks go."""

from __future__ import annotations

import pytest
from quart.testing import QuartClient

from backend.errors import Conflict
from backend.knowledge import document_runs
from backend.models import Document
from backend.models.knowledge import DocumentRun
from backend.search.stores import search_store
from tests.support.accounts import Account
from tests.support.knowledge import create_dataset, upload_ok
from tests.support.search_stores import chunk


async def uploaded(client: QuartClient, account: Account, count: int = 1) -> list[Document]:
    dataset = await create_dataset(client, account)
    files = [(f"{n}.txt", b"text") for n in range(count)]
    documents = await upload_ok(client, account, dataset["id"], files)
    return [await Document.get(id=document["id"]) for document in documents]


async def test_a_run_goes_queued_started_progressing_done(
    client: QuartClient, owner: Account
) -> None:
    [document] = await uploaded(client, owner)
    runs = await document_runs.queue_for_parsing([document])
    run_id = runs[document.id]
    queued = await Document.get(id=document.id)
    assert (queued.run, queued.run_id, queued.progress) == (DocumentRun.RUNNING, run_id, 0.0)
    assert queued.progress_msg.endswith("Task is queued.")

    started = await document_runs.start(document.id, run_id)
    assert started is not None and started.process_begin_at is not None
    assert await document_runs.record_progress(document.id, run_id, 0.5, "Parsed 3 pages (0.1s)")
    assert await document_runs.finish(
        document.id, run_id, DocumentRun.DONE, "Task done (1.2s)", chunk_count=4, token_count=90
    )
    done = await Document.get(id=document.id)
    assert (done.run, done.progress, done.chunk_count, done.token_count) == (
        DocumentRun.DONE,
        1.0,
        4,
        90,
    )
    lines = done.progress_msg.split("\n")
    assert [line[9:] for line in lines] == [
        "Task is queued.",
        "Task has been received.",
        "Parsed 3 pages (0.1s)",
        "Task done (1.2s)",
    ]
    assert done.process_duration >= 0
    # The finished run is no longer live: a late or duplicate write changes nothing.
    assert not await document_runs.record_progress(document.id, run_id, 0.1)
    assert not await document_runs.finish(document.id, run_id, DocumentRun.FAIL, "late")
    assert (await Document.get(id=document.id)).run is DocumentRun.DONE


async def test_a_failed_run_keeps_its_reason_and_can_be_queued_again(
    client: QuartClient, owner: Account
) -> None:
    [document] = await uploaded(client, owner)
    run_id = (await document_runs.queue_for_parsing([document]))[document.id]
    await document_runs.start(document.id, run_id)
    assert await document_runs.finish(
        document.id, run_id, DocumentRun.FAIL, "The PDF is encrypted: remove its password"
    )
    failed = await Document.get(id=document.id)
    assert failed.run is DocumentRun.FAIL
    assert failed.progress_msg.endswith("The PDF is encrypted: remove its password")
    again = (await document_runs.queue_for_parsing([failed]))[document.id]
    assert again != run_id
    assert not await document_runs.record_progress(document.id, run_id, 0.2)
    assert await document_runs.record_progress(document.id, again, 0.2)


async def test_queueing_a_running_document_is_409(client: QuartClient, owner: Account) -> None:
    [document] = await uploaded(client, owner)
    await document_runs.queue_for_parsing([document])
    with pytest.raises(Conflict):
        await document_runs.queue_for_parsing([await Document.get(id=document.id)])


async def test_cancel_makes_the_running_job_stale(client: QuartClient, owner: Account) -> None:
    first, second = await uploaded(client, owner, 2)
    runs = await document_runs.queue_for_parsing([first])
    cancelled = await document_runs.cancel([await Document.get(id=first.id), second])
    assert cancelled == [first.id]  # the UNSTART one had nothing to stop
    stopped = await Document.get(id=first.id)
    assert (stopped.run, stopped.run_id) == (DocumentRun.CANCEL, None)
    assert await document_runs.start(first.id, runs[first.id]) is None
    assert not await document_runs.finish(first.id, runs[first.id], DocumentRun.DONE, "done")
    with pytest.raises(ValueError):
        await document_runs.finish(first.id, runs[first.id], DocumentRun.CANCEL, "no")


async def test_deleting_a_dataset_mid_parse_stops_its_job_and_removes_its_chunks(
    client: QuartClient, owner: Account
) -> None:
    dataset = await create_dataset(client, owner)
    kept = await create_dataset(client, owner)
    [document] = await upload_ok(client, owner, dataset["id"], [("a.txt", b"text")])
    [other] = await upload_ok(client, owner, kept["id"], [("b.txt", b"text")])
    row = await Document.get(id=document["id"])
    run_id = (await document_runs.queue_for_parsing([row]))[row.id]
    assert await document_runs.start(row.id, run_id) is not None
    store = search_store()
    for doc, ds in ((document, dataset), (other, kept)):
        records = [
            chunk(
                f"{doc['id']}-{n}",
                f"chunk {n}",
                tenant=str(owner.id),
                dataset=ds["id"],
                document=doc["id"],
            )
            for n in range(3)
        ]
        await store.replace_document(doc["id"], records)

    response = await client.delete(
        "/api/v1/datasets", json={"ids": [dataset["id"]]}, headers=owner.headers
    )
    assert response.status_code == 200
    assert await store.count_chunks(document["id"]) == 0
    assert await store.count_chunks(other["id"]) == 3
    # The job still running finds its run gone: every write is refused, so it stops.
    assert not await document_runs.record_progress(row.id, run_id, 0.9, "Embedding")
    assert not await document_runs.finish(row.id, run_id, DocumentRun.DONE, "done")


async def test_deleting_documents_removes_their_chunks(client: QuartClient, owner: Account) -> None:
    dataset = await create_dataset(client, owner)
    gone, kept = await upload_ok(client, owner, dataset["id"], [("a.txt", b"a"), ("b.txt", b"b")])
    store = search_store()
    for doc in (gone, kept):
        await store.replace_document(
            doc["id"],
            [
                chunk(
                    f"{doc['id']}-0",
                    "text",
                    tenant=str(owner.id),
                    dataset=dataset["id"],
                    document=doc["id"],
                )
            ],
        )
    response = await client.delete(
        f"/api/v1/datasets/{dataset['id']}/documents",
        json={"ids": [gone["id"]]},
        headers=owner.headers,
    )
    assert response.status_code == 200
    assert await store.count_chunks(gone["id"]) == 0
    assert await store.count_chunks(kept["id"]) == 1
