"""QAnything's `document_parser` over real sockets with a real ingest worker: one
uploaded file parsed and chunked by the worker, its chunks returned in QAnything's
`parser_documents`, and nothing stored (no dataset, document, file or chunk)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import deserialize_job
from quart import Quart

from backend.knowledge.parse_preview import PARSE_PREVIEW_JOB
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.document_files import docx_file, pdf_file
from tests.support.ingest_stack import IngestStack, account_fixtures, ingest_stack

ROUTE = "/api/qanything/document_parser"
LAKE = "Lake Baikal is the deepest lake in the world."
PINE = "Siberian pines grow on the rocky shore."


@pytest.fixture(scope="module")
async def stack(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[IngestStack]:
    async with ingest_stack(settings, tmp_path_factory.mktemp("qany-parse")) as running:
        yield running


account, client = account_fixtures(password=False)


async def create_kb(client: httpx.AsyncClient, **fields: Any) -> str:
    created = await client.post("/api/v1/datasets", json={"name": "kb", **fields})
    assert created.status_code == 201, created.text
    return created.json()["data"]["id"]


async def parse(
    client: httpx.AsyncClient, fields: dict[str, str], name: str, data: bytes
) -> tuple[int, Any]:
    response = await client.post(ROUTE, data=fields, files=[("file", (name, data))])
    return response.status_code, response.json()


async def holdings(stack: IngestStack, client: httpx.AsyncClient) -> tuple[int, list[int], int]:
    """The caller's datasets, each one's documents, and the files in storage."""
    listed = (await client.get("/api/v1/datasets")).json()["data"]
    counts = []
    for dataset in listed:
        docs = await client.get(f"/api/v1/datasets/{dataset['id']}/documents")
        counts.append(docs.json()["data"]["total"])
    root = stack.settings.documents_dir
    stored = sum(1 for path in root.rglob("*") if path.is_file()) if root.exists() else 0
    return len(listed), counts, stored


async def test_text_file_parses_into_chunks_and_nothing_is_stored(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    kb_id = await create_kb(client, parser_config={"chunk_token_num": 12})
    before = await holdings(stack, client)
    text = f"{LAKE}\n{PINE}\n"
    fields = {"user_id": str(account.id), "kb_id": kb_id}
    status, body = await parse(client, fields, "lakes.txt", text.encode())
    assert status == 200, body
    assert (body["code"], body["msg"]) == (200, "document parser success")
    documents = body["parser_documents"]
    # The knowledge base's 12-token budget: one chunk per sentence.
    assert [d["page_content"] for d in documents] == [LAKE, PINE]
    metas = [d["metadata"] for d in documents]
    assert [m["chunk_id"] for m in metas] == [0, 1]
    first = metas[0]
    assert set(first) == {
        "user_id",
        "kb_id",
        "file_id",
        "file_name",
        "chunk_id",
        "file_path",
        "faq_dict",
    }
    assert (first["user_id"], first["kb_id"], first["file_name"]) == (
        str(account.id),
        kb_id,
        "lakes.txt",
    )
    assert first["file_path"] == "lakes.txt" and first["faq_dict"] == {}
    assert len(first["file_id"]) == 32 and {m["file_id"] for m in metas} == {first["file_id"]}
    assert await holdings(stack, client) == before
    # Without a kb_id (optional): the default chunking, one chunk here; the username
    # names the caller too.
    status, body = await parse(client, {"user_id": account.username}, "l.txt", text.encode())
    assert status == 200, body
    [only] = body["parser_documents"]
    assert only["page_content"] == f"{LAKE}\n{PINE}" and only["metadata"]["kb_id"] is None
    assert await holdings(stack, client) == before


async def test_docx_and_pdf_parse_with_the_ingest_parsers(
    client: httpx.AsyncClient, account: Account, tmp_path: Path
) -> None:
    me = {"user_id": str(account.id)}
    word = docx_file(tmp_path / "w.docx", [("heading", "Lakes"), ("paragraph", LAKE)])
    status, body = await parse(client, me, "report.docx", word.read_bytes())
    assert status == 200, body
    contents = "\n".join(d["page_content"] for d in body["parser_documents"])
    assert "Lakes" in contents and LAKE in contents
    assert body["parser_documents"][0]["metadata"]["file_name"] == "report.docx"
    pdf = pdf_file(tmp_path / "p.pdf", [[LAKE], [PINE]])
    status, body = await parse(client, me, "pages.pdf", pdf.read_bytes())
    assert status == 200, body
    contents = "\n".join(d["page_content"] for d in body["parser_documents"])
    assert LAKE in contents and PINE in contents


async def test_a_qa_knowledge_base_gives_faq_dicts(
    client: httpx.AsyncClient, account: Account
) -> None:
    kb_id = await create_kb(client, chunk_method="qa")
    rows = "question,answer\nHow deep is Baikal?,1642 metres\nWhere is it?,Siberia\n"
    fields = {"user_id": str(account.id), "kb_id": kb_id}
    status, body = await parse(client, fields, "faq.csv", rows.encode())
    assert status == 200, body
    assert [d["metadata"]["faq_dict"] for d in body["parser_documents"]] == [
        {"question": "How deep is Baikal?", "answer": "1642 metres"},
        {"question": "Where is it?", "answer": "Siberia"},
    ]


async def test_user_id_rules_and_another_users_kb(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    data = LAKE.encode()
    status, body = await parse(client, {}, "a.txt", data)
    assert (status, body["code"]) == (400, 2002) and body["msg"] == body["message"]
    status, body = await parse(client, {"user_id": " "}, "a.txt", data)
    assert (status, body["code"]) == (400, 2002)
    status, body = await parse(client, {"user_id": "zzp"}, "a.txt", data)
    assert (status, body["code"]) == (403, 2005) and "user_id" in body["msg"]
    stranger = await create_account(stack.settings, password=False)
    async with stack.client(stranger) as http:
        theirs = await create_kb(http)
    for kb_id in (theirs, "0" * 32, "KB123456789"):
        status, body = await parse(
            client, {"user_id": str(account.id), "kb_id": kb_id}, "a.txt", data
        )
        assert (status, body["code"]) == (404, 2003), (kb_id, body)


async def test_bad_files_are_4xx_with_a_message(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    me = {"user_id": str(account.id)}
    before = await holdings(stack, client)
    cases: list[tuple[str, bytes, int, str]] = [
        ("empty.txt", b"", 400, "empty"),
        ("tool.exe", b"MZ binary", 415, "cannot parse this type"),
        ("fake.pdf", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 415, "not PDF"),
        ("broken.pdf", b"%PDF-1.4 not really a pdf", 422, "cannot be parsed"),
        ("blank.txt", b"   \n\n  ", 422, "no text"),
    ]
    for name, data, expected, words in cases:
        status, body = await parse(client, me, name, data)
        assert status == expected, (name, body)
        assert body["code"] == expected and words in body["msg"], (name, body)
    too_big = b"a" * (stack.settings.document_max_bytes + 1)
    status, body = await parse(client, me, "big.txt", too_big)
    assert status == 413 and "too large" in body["msg"]
    no_file = await client.post(ROUTE, data=me, files=[("other", ("x", b""))])
    assert no_file.status_code == 400, no_file.text
    two = await client.post(
        ROUTE, data=me, files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))]
    )
    assert two.status_code == 400 and "one file" in two.json()["msg"]
    fields_only = await client.post(ROUTE, files={"user_id": (None, me["user_id"])})
    assert fields_only.status_code == 400 and "No file part" in fields_only.json()["msg"]
    as_json = await client.post(ROUTE, json=me)
    assert as_json.status_code == 415 and "multipart" in as_json.json()["msg"]
    assert await holdings(stack, client) == before


async def test_no_worker_answering_is_a_503(app: Quart, settings: Settings, tmp_path: Path) -> None:
    async with ingest_stack(
        settings, tmp_path, workers=0, document_parser_wait_seconds=0.5
    ) as idle:
        account = await create_account(idle.settings, password=False)
        async with idle.client(account) as http:
            status, body = await parse(http, {"user_id": str(account.id)}, "a.txt", LAKE.encode())
    assert status == 503, body
    assert body["code"] == 503 and "did not parse the file" in body["msg"]


async def preview_jobs(redis: aioredis.Redis) -> tuple[list[bytes], list[bytes]]:
    """The arq job keys of queued or running `parse_preview` jobs, and those of them
    running now (other modules' stopped stacks may leave other jobs' keys behind)."""
    jobs = [
        key
        async for key in redis.scan_iter(match=f"{job_key_prefix}*")
        if (raw := await redis.get(key)) is not None
        and deserialize_job(raw).function == PARSE_PREVIEW_JOB
    ]
    running = [
        key
        for key in jobs
        if await redis.exists(in_progress_key_prefix + key.decode()[len(job_key_prefix) :])
    ]
    return jobs, running


async def until_jobs(
    redis: aioredis.Redis, done: Callable[[list[bytes], list[bytes]], bool], within: float
) -> None:
    async with asyncio.timeout(within):
        while True:
            if done(*await preview_jobs(redis)):
                return
            await asyncio.sleep(0.05)


def stored_previews(stack: IngestStack) -> list[Path]:
    folder = stack.settings.documents_dir / "previews"
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


async def test_a_caller_who_hangs_up_stops_its_parse_and_nothing_stays(
    stack: IngestStack, client: httpx.AsyncClient, account: Account
) -> None:
    kb_id = await create_kb(client, parser_config={"chunk_token_num": 8})
    # About 12 MB of short lines: tens of seconds of parsing and chunking.
    lines = "\n".join(f"Line {n} of the lake survey, depth {n % 1642} m." for n in range(260_000))
    fields = {"user_id": str(account.id), "kb_id": kb_id}
    redis = aioredis.from_url(stack.settings.redis_url)
    try:
        request = asyncio.create_task(
            client.post(
                ROUTE,
                data=fields,
                files=[("file", ("survey.txt", lines.encode()))],
                timeout=httpx.Timeout(120, read=8),
            )
        )
        await until_jobs(redis, lambda jobs, running: bool(running), within=30)
        # The job carries a storage key, not the file: the payload is in file storage.
        jobs, _ = await preview_jobs(redis)
        sizes = [await redis.memory_usage(key) or 0 for key in jobs]
        assert jobs and max(sizes) < 16 * 1024, sizes
        assert [path.stat().st_size for path in stored_previews(stack)] == [len(lines.encode())]
        with pytest.raises(httpx.ReadTimeout):
            await request  # the caller gives up and hangs up
        hung_up = time.monotonic()
        # Its job is aborted: the worker stops parsing it and the job is gone.
        await until_jobs(redis, lambda jobs, running: not jobs, within=5)
        assert time.monotonic() - hung_up < 5
        assert stored_previews(stack) == []
        results = [key async for key in redis.scan_iter(match=f"{result_key_prefix}*")]
        assert [key for key in results if await redis.ttl(key) > 10] == []
    finally:
        await redis.aclose()
    # The worker is free again at once: a small parse answers.
    status, body = await parse(client, fields, "small.txt", LAKE.encode())
    assert status == 200, body
