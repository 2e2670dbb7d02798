"""Helpers for the dataset and document tests: small real files of each format, multipart
bodies built byte by byte (so a test controls every file name), and API shortcuts."""

from __future__ import annotations

import io
import uuid
import zipfile
from typing import Any

from quart.testing import QuartClient

from tests.support.accounts import Account

BOUNDARY = "sluice-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"

PDF = (
    b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
# An OLE compound file header: what an encrypted docx/xlsx/pptx is.
COMPOUND_FILE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
OFFICE_PARTS = {
    "docx": "word/document.xml",
    "xlsx": "xl/workbook.xml",
    "pptx": "ppt/presentation.xml",
}


def office_file(kind: str) -> bytes:
    """A minimal Office Open XML package of `kind` (docx, xlsx or pptx)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        package.writestr(OFFICE_PARTS[kind], "<document/>")
    return buffer.getvalue()


def plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return buffer.getvalue()


def multipart(
    files: list[tuple[str, bytes]], fields: dict[str, str] | None = None, field: str = "file"
) -> bytes:
    """A multipart/form-data body: one `field` part per (file name, content)."""
    parts = []
    for name, value in (fields or {}).items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for filename, content in files:
        quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
        header = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{quoted}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(header.encode() + content + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def create_dataset(client: QuartClient, account: Account, **fields: Any) -> dict:
    body = {"name": f"kb-{uuid.uuid4().hex[:8]}", **fields}
    response = await client.post("/api/v1/datasets", json=body, headers=account.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["data"]


async def upload(
    client: QuartClient,
    account: Account,
    dataset_id: str,
    files: list[tuple[str, bytes]],
    *,
    query: str = "",
    fields: dict[str, str] | None = None,
):
    return await client.post(
        f"/api/v1/datasets/{dataset_id}/documents{query}",
        data=multipart(files, fields),
        headers={**account.headers, "Content-Type": MULTIPART},
    )


async def upload_ok(
    client: QuartClient, account: Account, dataset_id: str, files: list[tuple[str, bytes]]
) -> list[dict]:
    response = await upload(client, account, dataset_id, files)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["data"]
