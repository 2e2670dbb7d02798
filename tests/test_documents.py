"""Documents of a dataset: upload (content-checked, duplicate modes, limits, hostile names),
list, download, update, delete and batch status; another user's ids are 404 everywhere."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart
from quart.testing import QuartClient

from backend.models import Document
from backend.models.knowledge import DocumentRun
from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.knowledge import (
    COMPOUND_FILE,
    MULTIPART,
    PDF,
    PNG,
    create_dataset,
    multipart,
    office_file,
    plain_zip,
    upload,
    upload_ok,
)


async def error(response, status: int) -> str:
    assert response.status_code == status, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["code"] == status
    return body["message"]


def stored_files(settings: Settings, dataset_id: str) -> list[Path]:
    directory = settings.documents_dir / dataset_id
    return sorted(directory.iterdir()) if directory.exists() else []


def docs_url(dataset_id: str) -> str:
    return f"/api/v1/datasets/{dataset_id}/documents"


async def test_upload_stores_several_files_with_ragflow_fields(
    client: QuartClient, owner: Account, settings: Settings
) -> None:
    dataset = await create_dataset(client, owner, parser_config={"chunk_token_num": 128})
    files = [
        ("notes.txt", "plain text, 中文\n".encode()),
        ("guide.md", b"# Title\n\nbody\n"),
        ("paper.pdf", PDF),
        ("report.docx", office_file("docx")),
        ("sheet.xlsx", office_file("xlsx")),
        ("deck.pptx", office_file("pptx")),
        ("table.csv", b"a,b\n1,2\n"),
        ("data.json", b'{"k": [1, 2]}'),
        ("page.htm", b"<html><body>hi</body></html>"),
    ]
    response = await upload(client, owner, dataset["id"], files)
    assert response.status_code == 201, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["code"] == 0 and body["skipped"] == []
    documents = body["data"]
    assert [d["name"] for d in documents] == [name for name, _ in files]
    assert [d["suffix"] for d in documents] == [
        "txt",
        "md",
        "pdf",
        "docx",
        "xlsx",
        "pptx",
        "csv",
        "json",
        "html",
    ]
    assert [d["type"] for d in documents] == ["doc", "doc", "pdf"] + ["doc"] * 6
    for document, (_, content) in zip(documents, files, strict=True):
        assert document["dataset_id"] == dataset["id"]
        assert document["run"] == "UNSTART" and document["progress"] == 0
        assert document["size"] == len(content)
        assert document["chunk_method"] == "naive"
        assert document["parser_config"]["chunk_token_num"] == 128
        assert (document["status"], document["enabled"]) == ("1", True)
        assert document["created_by"] == str(owner.id)
        path = settings.documents_dir / document["location"]
        assert path.read_bytes() == content
    listed = await (
        await client.get(f"/api/v1/datasets?id={dataset['id']}", headers=owner.headers)
    ).get_json()
    assert listed["data"][0]["document_count"] == len(files)


async def test_download_returns_the_original_bytes_under_a_safe_name(
    client: QuartClient, owner: Account
) -> None:
    dataset = await create_dataset(client, owner)
    content = "第一行\nsecond line\n".encode()
    [document] = await upload_ok(client, owner, dataset["id"], [('报告 "2024".txt', content)])
    response = await client.get(
        f"{docs_url(dataset['id'])}/{document['id']}", headers=owner.headers
    )
    assert response.status_code == 200
    assert await response.get_data() == content
    assert response.mimetype == "text/plain"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    assert "filename*=UTF-8''%E6%8A%A5%E5%91%8A%20%222024%22.txt" in disposition
    assert '"2024"' not in disposition.split(";")[1]


async def test_soft_mode_skips_names_the_dataset_has(
    client: QuartClient, owner: Account, settings: Settings
) -> None:
    dataset = await create_dataset(client, owner)
    await upload_ok(client, owner, dataset["id"], [("a.txt", b"one")])
    response = await upload(
        client, owner, dataset["id"], [("a.txt", b"two"), ("b.txt", b"three"), ("b.txt", b"four")]
    )
    body = await response.get_json()
    assert [d["name"] for d in body["data"]] == ["b.txt"]
    assert [s["name"] for s in body["skipped"]] == ["a.txt", "b.txt"]
    assert "mode=strong" in body["skipped"][0]["reason"]
    assert len(stored_files(settings, dataset["id"])) == 2
    assert await Document.filter(dataset_id=dataset["id"]).count() == 2


@pytest.mark.parametrize(("query", "fields"), [("?mode=strong", None), ("", {"mode": "strong"})])
async def test_strong_mode_uploads_duplicates(
    client: QuartClient, owner: Account, query: str, fields: dict | None
) -> None:
    dataset = await create_dataset(client, owner)
    await upload_ok(client, owner, dataset["id"], [("a.txt", b"one")])
    response = await upload(
        client, owner, dataset["id"], [("a.txt", b"two")], query=query, fields=fields
    )
    assert response.status_code == 201
    assert await Document.filter(dataset_id=dataset["id"], name="a.txt").count() == 2


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("photo.pdf", PNG, "Portable Network Graphics"),
        ("notes.txt", PNG, "Portable Network Graphics"),
        ("paper.pdf", b"just some text, not a PDF", "not PDF"),
        ("report.docx", office_file("xlsx"), "an Excel workbook"),
        ("deck.pptx", plain_zip(), "a ZIP archive"),
        ("sheet.xlsx", PDF, "Portable Document Format"),
        ("tool.exe", b"MZ\x90\x00", "cannot parse"),
        ("archive.zip", plain_zip(), "cannot parse"),
        ("old.doc", COMPOUND_FILE, "cannot parse"),
        ("no-extension", b"text", "cannot parse"),
    ],
)
async def test_content_that_is_not_its_format_is_415_and_nothing_is_kept(
    client: QuartClient, owner: Account, settings: Settings, name: str, content: bytes, said: str
) -> None:
    dataset = await create_dataset(client, owner)
    response = await upload(client, owner, dataset["id"], [("ok.txt", b"fine"), (name, content)])
    message = await error(response, 415)
    assert name in message and said in message
    assert stored_files(settings, dataset["id"]) == []
    assert not await Document.filter(dataset_id=dataset["id"]).exists()


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        # puremagic calls text starting "This is " a "GNU Info Reader file": no guessing.
        ("guide.pdf", b"This is the user guide, in plain text.\n", "; it is plain text."),
        ("report.docx", b"This is a report\n", "; it is plain text."),
        ("program.txt", b"\x7fELF\x02\x01\x01" + bytes(64), "; it is an ELF executable."),
        # Three signature bytes (JPEG's) or none: not sure, so nothing is named.
        ("photo.pdf", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "is not PDF."),
        ("noise.md", bytes(range(256)) * 4, "is not text (Markdown)."),
    ],
)
async def test_the_415_says_what_was_expected_and_names_only_what_is_certain(
    client: QuartClient, owner: Account, name: str, content: bytes, said: str
) -> None:
    dataset = await create_dataset(client, owner)
    message = await error(await upload(client, owner, dataset["id"], [(name, content)]), 415)
    suffix = name.rsplit(".", 1)[1]
    expected = {"pdf": "PDF", "docx": "a Word document (DOCX)"}.get(suffix, "text")
    assert f"'{name}': its extension says {expected}" in message
    assert said in message
    assert "GNU" not in message and "looks like" not in message


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.pdf", b""), ("locked.docx", COMPOUND_FILE), ("broken.xlsx", b"PK\x03\x04broken")],
)
async def test_broken_encrypted_or_empty_files_are_accepted_for_parsing_to_fail(
    client: QuartClient, owner: Account, name: str, content: bytes
) -> None:
    dataset = await create_dataset(client, owner)
    [document] = await upload_ok(client, owner, dataset["id"], [(name, content)])
    assert document["size"] == len(content) and document["run"] == "UNSTART"


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\evil.md", "evil.md"),
        ("/abs/path/x.txt", "x.txt"),
        ("invoice\u202etxt.exe.txt", "invoicetxt.exe.txt"),
        ("  spaced .txt  ", "spaced .txt"),
    ],
)
async def test_path_tricks_in_names_are_neutralised(
    client: QuartClient, owner: Account, settings: Settings, raw: str, kept: str
) -> None:
    dataset = await create_dataset(client, owner)
    [document] = await upload_ok(client, owner, dataset["id"], [(raw, b"text")])
    assert document["name"] == kept
    [path] = stored_files(settings, dataset["id"])
    assert path.name == f"{document['id']}.{document['suffix']}"
    assert path.parent == settings.documents_dir / dataset["id"]


@pytest.mark.parametrize("raw", ["..", ".", "../..", "  ", "a/", "x" * 252 + ".txt"])
async def test_names_with_nothing_usable_are_400(
    client: QuartClient, owner: Account, raw: str
) -> None:
    dataset = await create_dataset(client, owner)
    await error(await upload(client, owner, dataset["id"], [(raw, b"text")]), 400)


@pytest.fixture
async def small_limits(app: Quart, settings: Settings) -> AsyncIterator[Settings]:
    small = settings.model_copy(
        update={"document_max_bytes": 1000, "document_upload_max_bytes": 2500}
    )
    app.config["SETTINGS"] = small
    yield small
    app.config["SETTINGS"] = settings


async def test_a_file_over_its_limit_is_413_naming_it(
    client: QuartClient, owner: Account, small_limits: Settings
) -> None:
    dataset = await create_dataset(client, owner)
    response = await upload(client, owner, dataset["id"], [("big.txt", b"x" * 1001)])
    message = await error(response, 413)
    assert "big.txt" in message and "1000 bytes" in message
    assert stored_files(small_limits, dataset["id"]) == []
    exactly = await upload(client, owner, dataset["id"], [("max.txt", b"x" * 1000)])
    assert exactly.status_code == 201


async def test_files_over_the_request_limit_are_413_and_none_kept(
    client: QuartClient, owner: Account, small_limits: Settings
) -> None:
    dataset = await create_dataset(client, owner)
    files = [(f"{n}.txt", b"x" * 900) for n in range(3)]
    message = await error(await upload(client, owner, dataset["id"], files), 413)
    assert "2500 bytes" in message
    assert stored_files(small_limits, dataset["id"]) == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"file": "x"}', "application/json", 415),
        (b"file=x", "application/x-www-form-urlencoded", 415),
        (b"garbage", MULTIPART, 400),
        (multipart([("a.txt", b"cut")])[:-30], MULTIPART, 400),
        (
            b"--sluice-test-boundary\r\n\r\nno headers\r\n--sluice-test-boundary--\r\n",
            MULTIPART,
            400,
        ),
        (multipart([], {"mode": "soft"}), MULTIPART, 400),
        (multipart([("a.txt", b"x")], field="attachment"), MULTIPART, 400),
        (multipart([("", b"x")]), MULTIPART, 400),
        (multipart([("a.txt", b"x")], {"mode": "loud"}), MULTIPART, 422),
        (b"x", "multipart/form-data", 400),
    ],
)
async def test_bad_bodies_are_clear_4xx(
    client: QuartClient,
    owner: Account,
    settings: Settings,
    body: bytes,
    content_type: str,
    status: int,
) -> None:
    dataset = await create_dataset(client, owner)
    response = await client.post(
        docs_url(dataset["id"]), data=body, headers={**owner.headers, "Content-Type": content_type}
    )
    await error(response, status)
    assert stored_files(settings, dataset["id"]) == []


async def test_list_filters_pages_and_orders(client: QuartClient, owner: Account) -> None:
    dataset = await create_dataset(client, owner)
    # Lowercase, no shared prefixes: the order is the same under any SQL collation.
    names = ["alpha.txt", "beta.md", "delta.pdf", "gamma.txt"]
    contents = [b"a", b"b", PDF, b"g"]
    documents = await upload_ok(
        client, owner, dataset["id"], list(zip(names, contents, strict=True))
    )
    ids = [d["id"] for d in documents]
    await Document.filter(id=ids[1]).update(run=DocumentRun.DONE)
    await Document.filter(id=ids[2]).update(run=DocumentRun.FAIL)

    async def listed(query: str) -> dict:
        response = await client.get(f"{docs_url(dataset['id'])}{query}", headers=owner.headers)
        assert response.status_code == 200, await response.get_data(as_text=True)
        return (await response.get_json())["data"]

    everything = await listed("")
    assert everything["total"] == 4
    assert {d["id"] for d in everything["docs"]} == set(ids)
    assert [d["name"] for d in (await listed("?orderby=name&desc=false"))["docs"]] == sorted(names)
    assert {d["name"] for d in (await listed("?keywords=TA"))["docs"]} == {"beta.md", "delta.pdf"}
    assert [d["id"] for d in (await listed(f"?id={ids[3]}"))["docs"]] == [ids[3]]
    assert [d["id"] for d in (await listed("?name=beta.md"))["docs"]] == [ids[1]]
    assert {d["id"] for d in (await listed(f"?ids={ids[0]}&ids={ids[2]}"))["docs"]} == {
        ids[0],
        ids[2],
    }
    assert {d["id"] for d in (await listed("?run=DONE&run=4"))["docs"]} == {ids[1], ids[2]}
    assert {d["id"] for d in (await listed("?run=UNSTART"))["docs"]} == {ids[0], ids[3]}
    assert {d["id"] for d in (await listed("?suffix=pdf"))["docs"]} == {ids[2]}
    page = await listed("?page=2&page_size=3&orderby=name&desc=false")
    assert (page["total"], [d["name"] for d in page["docs"]]) == (4, ["gamma.txt"])
    missing = uuid.uuid4().hex
    await error(
        await client.get(f"{docs_url(dataset['id'])}?id={missing}", headers=owner.headers), 404
    )
    await error(await client.get(f"{docs_url(dataset['id'])}?run=LOST", headers=owner.headers), 422)


async def test_update_renames_reconfigures_disables_and_tags(
    client: QuartClient, owner: Account
) -> None:
    dataset = await create_dataset(client, owner)
    [document] = await upload_ok(client, owner, dataset["id"], [("a.txt", b"text")])
    url = f"{docs_url(dataset['id'])}/{document['id']}"
    body = {
        "name": "renamed.txt",
        "parser_config": {"chunk_token_num": 64},
        "enabled": 0,
        "meta_fields": {"author": "ann", "year": 2024, "tags": ["x", 1]},
    }
    updated = (await (await client.put(url, json=body, headers=owner.headers)).get_json())["data"]
    assert updated["name"] == "renamed.txt"
    assert updated["parser_config"]["chunk_token_num"] == 64
    assert updated["parser_config"]["delimiter"] == "\n"
    assert (updated["status"], updated["enabled"]) == ("0", False)
    assert updated["meta_fields"] == body["meta_fields"]
    # RAGFlow's SDK sends PATCH; a new chunk method takes its default parser settings.
    patched = await client.patch(
        url, json={"chunk_method": "one", "enabled": True}, headers=owner.headers
    )
    patched_doc = (await patched.get_json())["data"]
    assert patched_doc["chunk_method"] == "one" and patched_doc["parser_config"] == {}
    assert patched_doc["enabled"] is True
    await error(await client.put(url, json={"name": "renamed.pdf"}, headers=owner.headers), 400)
    for bad in (
        {"enabled": 2},
        {"chunk_method": "book"},
        {"meta_fields": {"a": {"b": 1}}},
        {"progress": 1},
        {"name": ""},
    ):
        await error(await client.put(url, json=bad, headers=owner.headers), 422)


# Names a client may send, and what both upload and rename keep of them (None: 400).
HOSTILE_NAMES = [
    ("../../etc/passwd.txt", "passwd.txt"),
    ("evil\u202efdp.txt", "evilfdp.txt"),
    ("line\r\nbreak.txt", "linebreak.txt"),
    ("bell\x07.txt", "bell.txt"),
    ("\u2066isolate\u2069.txt", "isolate.txt"),
    ("é" * 250 + ".txt", None),
]


@pytest.mark.parametrize(("raw", "kept"), HOSTILE_NAMES)
async def test_rename_cleans_names_by_the_upload_rule(
    client: QuartClient, owner: Account, raw: str, kept: str | None
) -> None:
    dataset = await create_dataset(client, owner)
    # A multipart header cannot carry CR/LF; every other name is uploaded too.
    uploaded = None if "\n" in raw else await upload(client, owner, dataset["id"], [(raw, b"x")])
    [document] = await upload_ok(client, owner, dataset["id"], [("plain.txt", b"text")])
    url = f"{docs_url(dataset['id'])}/{document['id']}"
    renamed = await client.patch(url, json={"name": raw}, headers=owner.headers)
    if kept is None:
        assert "255 bytes" in await error(renamed, 400)
        assert uploaded is not None and "255 bytes" in await error(uploaded, 400)
        assert (await Document.get(id=document["id"])).name == "plain.txt"
        return
    if uploaded is not None:
        assert (await uploaded.get_json())["data"][0]["name"] == kept
    assert renamed.status_code == 200, await renamed.get_data(as_text=True)
    assert (await renamed.get_json())["data"]["name"] == kept
    assert (await Document.get(id=document["id"])).name == kept


async def test_download_name_never_carries_bidi_or_control_characters(
    client: QuartClient, owner: Account
) -> None:
    """A name stored before renames were cleaned still downloads under a safe name."""
    dataset = await create_dataset(client, owner)
    [document] = await upload_ok(client, owner, dataset["id"], [("a.txt", b"text")])
    await Document.filter(id=document["id"]).update(name="evil\u202efdp\r\n\u2067.txt")
    response = await client.get(
        f"{docs_url(dataset['id'])}/{document['id']}", headers=owner.headers
    )
    disposition = response.headers["Content-Disposition"]
    assert "filename*=UTF-8''evilfdp.txt" in disposition
    assert 'filename="evilfdp.txt"' in disposition


async def test_delete_removes_rows_and_files_all_or_nothing(
    client: QuartClient, owner: Account, settings: Settings
) -> None:
    dataset = await create_dataset(client, owner)
    documents = await upload_ok(
        client, owner, dataset["id"], [("a.txt", b"a"), ("b.txt", b"b"), ("c.txt", b"c")]
    )
    url = docs_url(dataset["id"])
    unknown = {"ids": [documents[0]["id"], uuid.uuid4().hex]}
    await error(await client.delete(url, json=unknown, headers=owner.headers), 404)
    assert len(stored_files(settings, dataset["id"])) == 3

    response = await client.delete(url, json={"ids": [documents[0]["id"]]}, headers=owner.headers)
    assert (await response.get_json()) == {"code": 0, "data": None}
    assert not await Document.filter(id=documents[0]["id"]).exists()
    assert len(stored_files(settings, dataset["id"])) == 2
    for nothing in ({}, {"ids": None, "delete_all": False}, {"delete_all": 0}):
        await error(await client.delete(url, json=nothing, headers=owner.headers), 422)
    assert await Document.filter(dataset_id=dataset["id"]).count() == 2
    await client.delete(url, json={"delete_all": True}, headers=owner.headers)
    assert not await Document.filter(dataset_id=dataset["id"]).exists()
    assert stored_files(settings, dataset["id"]) == []


async def test_status_batch_is_shaped_as_qanything(client: QuartClient, owner: Account) -> None:
    dataset = await create_dataset(client, owner)
    documents = await upload_ok(
        client, owner, dataset["id"], [("a.txt", b"aaa"), ("b.txt", b"b"), ("c.txt", b"c")]
    )
    ids = [d["id"] for d in documents]
    await Document.filter(id=ids[1]).update(run=DocumentRun.DONE, chunk_count=2, content_length=40)
    await Document.filter(id=ids[2]).update(
        run=DocumentRun.FAIL,
        progress_msg="10:00:00 Task has been received.\n"
        "10:00:01 The PDF is encrypted: remove its password",
    )
    response = await client.post(
        f"{docs_url(dataset['id'])}/status", json={"ids": ids}, headers=owner.headers
    )
    data = (await response.get_json())["data"]
    assert data["total"] == {"gray": 1, "green": 1, "red": 1}
    details = data["details"]
    assert [d["file_id"] for d in details] == ids
    assert [d["status"] for d in details] == ["gray", "green", "red"]
    assert details[0]["bytes"] == 3 and details[0]["file_name"] == "a.txt"
    assert (details[1]["content_length"], details[1]["chunk_count"]) == (40, 2)
    assert "encrypted" in details[2]["msg"]
    assert len(details[0]["timestamp"]) == 12 and details[0]["timestamp"].isdigit()
    missing = await client.post(
        f"{docs_url(dataset['id'])}/status",
        json={"ids": [ids[0], uuid.uuid4().hex]},
        headers=owner.headers,
    )
    await error(missing, 404)
    empty = await client.post(
        f"{docs_url(dataset['id'])}/status", json={"ids": []}, headers=owner.headers
    )
    await error(empty, 422)


async def test_another_users_dataset_and_documents_are_404_everywhere(
    client: QuartClient, owner: Account, stranger: Account, settings: Settings
) -> None:
    dataset = await create_dataset(client, owner)
    [document] = await upload_ok(client, owner, dataset["id"], [("secret.txt", b"secret")])
    theirs = await create_dataset(client, stranger)
    doc_url = f"{docs_url(dataset['id'])}/{document['id']}"
    # The owner's document through the stranger's own dataset is not found either.
    crossed = f"{docs_url(theirs['id'])}/{document['id']}"
    attempts = [
        ("GET", docs_url(dataset["id"]), None),
        ("GET", doc_url, None),
        ("GET", crossed, None),
        ("PUT", doc_url, {"name": "x.txt"}),
        ("PATCH", crossed, {"enabled": 0}),
        ("DELETE", docs_url(dataset["id"]), {"ids": [document["id"]]}),
        ("DELETE", docs_url(theirs["id"]), {"ids": [document["id"]]}),
        ("POST", f"{docs_url(dataset['id'])}/status", {"ids": [document["id"]]}),
        ("POST", f"{docs_url(theirs['id'])}/status", {"ids": [document["id"]]}),
        ("DELETE", "/api/v1/datasets", {"ids": [dataset["id"]]}),
    ]
    for method, url, body in attempts:
        response = await client.open(url, method=method, json=body, headers=stranger.headers)
        await error(response, 404)
    upload_there = await upload(client, stranger, dataset["id"], [("mine.txt", b"x")])
    await error(upload_there, 404)
    assert await Document.filter(dataset_id=dataset["id"]).count() == 1
    assert (await Document.get(id=document["id"])).name == "secret.txt"
    assert len(stored_files(settings, dataset["id"])) == 1
    assert (await client.get(doc_url)).status_code == 401
