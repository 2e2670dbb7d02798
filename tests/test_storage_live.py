"""Every file through S3, with real processes: a web process and an ingest worker whose
DATA_DIR does not exist (and must still not exist at the end) store and read documents,
avatars and chat images in the bucket only.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from quart import Quart

from backend.settings import Settings
from backend.storage.configured import make_storage
from tests.support.accounts import Account
from tests.support.document_files import docx_file
from tests.support.images import image_bytes
from tests.support.ingest_stack import IngestStack, account_fixtures, ingest_stack, wait_for_run
from tests.support.knowledge import MULTIPART, multipart, plain_zip
from tests.support.s3_server import s3_server_or_skip, wait_for_bucket

pytestmark = pytest.mark.sqlite_only


@pytest.fixture(scope="module")
async def stack(
    app: Quart, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[IngestStack]:
    server = s3_server_or_skip()
    await wait_for_bucket(server, settings)
    log_dir = tmp_path_factory.mktemp("storage-live")
    on_s3 = server.settings(
        settings,
        # Nothing may create or read this: every file goes to the bucket.
        data_dir=log_dir / "no-data-dir",
        search_db_path=str(log_dir / "search.sqlite3"),
    )
    async with ingest_stack(on_s3, log_dir, **on_s3.model_dump(include=STORAGE_FIELDS)) as made:
        yield made


STORAGE_FIELDS = {
    "storage_url",
    "s3_endpoint_url",
    "s3_region",
    "aws_access_key_id",
    "aws_secret_access_key",
    "data_dir",
    "search_db_path",
}

account, client = account_fixtures(scope="module", password=False)


async def stored_keys(settings: Settings) -> list[str]:
    storage = make_storage(settings)
    try:
        return [stored.key async for stored in storage.listing()]
    finally:
        await storage.close()


async def test_documents_avatars_and_images_live_in_the_bucket_only(
    stack: IngestStack, account: Account, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    response = await client.post("/api/v1/datasets", json={"name": f"s3-{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 201, response.text
    dataset_id = response.json()["data"]["id"]
    word = docx_file(tmp_path / "notes.docx", [("paragraph", "Storage on S3 is shared.")])
    files = [("notes.docx", word.read_bytes()), ("readme.md", b"# Hello\n\nFiles live in S3.\n")]
    response = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart(files),
        headers={"Content-Type": MULTIPART},
    )
    assert response.status_code == 201, response.text
    documents = {item["name"]: item for item in response.json()["data"]}

    # The Office check reads the ZIP's directory from the bucket: a ZIP that is no
    # Word file is still refused, and leaves nothing behind.
    refused = await client.post(
        f"/api/v1/datasets/{dataset_id}/documents",
        content=multipart([("fake.docx", plain_zip())]),
        headers={"Content-Type": MULTIPART},
    )
    assert refused.status_code == 415, refused.text

    ids = [item["id"] for item in documents.values()]
    response = await client.post(
        f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": ids}
    )
    assert response.status_code == 200, response.text
    for document_id in ids:
        parsed = await wait_for_run(client, dataset_id, document_id)
        assert parsed["run"] == "DONE", parsed

    download = await client.get(
        f"/api/v1/datasets/{dataset_id}/documents/{documents['notes.docx']['id']}"
    )
    assert download.status_code == 200 and download.content == word.read_bytes()
    part = await client.get(download.url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == word.read_bytes()[100:200]

    avatar = await client.put(
        "/api/v1/users/me/avatar", content=image_bytes(), headers={"Content-Type": "image/png"}
    )
    assert avatar.status_code == 200, avatar.text
    got = await client.get("/api/v1/users/me/avatar")
    assert got.status_code == 200 and got.content.startswith(b"\xff\xd8")

    png = image_bytes()
    uploaded = await client.post("/api/v1/uploads", files={"file": ("a.png", png, "image/png")})
    assert uploaded.status_code == 201, uploaded.text
    upload_id = uploaded.json()["data"]["id"]
    got = await client.get(f"/api/v1/uploads/{upload_id}")
    assert got.status_code == 200 and got.content == png

    # QAnything's document_parser parses without keeping: nothing stays in the bucket.
    parsed = await client.post(
        "/api/qanything/document_parser",
        data={"user_id": str(account.id)},
        files=[("file", ("lake.txt", b"Lake Baikal is the deepest lake in the world.\n"))],
    )
    assert parsed.status_code == 200, parsed.text
    assert parsed.json()["parser_documents"], parsed.text

    keys = await stored_keys(stack.settings)
    assert not [key for key in keys if "/previews/" in key]
    assert {
        f"documents/{dataset_id}/{doc['id']}.{doc['name'].rsplit('.', 1)[1]}"
        for doc in documents.values()
    } <= set(keys)
    assert f"avatars/{account.id}.jpg" in keys
    assert f"uploads/{upload_id}.png" in keys
    assert len([key for key in keys if key.startswith(f"documents/{dataset_id}/")]) == 2
    assert not stack.settings.data_dir.exists(), "a process touched DATA_DIR"
