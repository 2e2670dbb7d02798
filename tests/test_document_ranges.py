"""Document downloads with `Range`: one byte range answers 206 with that part (a ranged
read of storage, on S3 too: tests/test_storage_live.py); a range past the end is a 416
saying the size; anything else gets the whole file."""

from __future__ import annotations

import pytest
from quart.testing import QuartClient

from backend.http.byte_ranges import RangeNotSatisfiable, requested_range
from tests.support.accounts import Account
from tests.support.knowledge import create_dataset, upload_ok

CONTENT = bytes(range(48, 48 + 75)) * 4  # 300 bytes of text


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 10)),
        ("bytes=290-", (290, 300)),
        ("bytes=-5", (295, 300)),
        ("bytes=250-999", (250, 300)),
        (" bytes=1-1 ", (1, 2)),
        (None, None),
        ("bytes=5-2", None),  # invalid: ignored
        ("bytes=0-1,5-6", None),  # several: the whole file
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_one_range_is_read_and_anything_else_ignored(
    header: str | None, expected: tuple[int, int] | None
) -> None:
    assert requested_range(header, 300) == expected


@pytest.mark.parametrize("header", ["bytes=300-", "bytes=1000-1001", "bytes=-0"])
def test_a_range_outside_the_file_is_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        requested_range(header, 300)


async def test_a_ranged_download(client: QuartClient, owner: Account) -> None:
    dataset = await create_dataset(client, owner)
    [document] = await upload_ok(client, owner, dataset["id"], [("digits.txt", CONTENT)])
    url = f"/api/v1/datasets/{dataset['id']}/documents/{document['id']}"

    part = await client.get(url, headers={**owner.headers, "Range": "bytes=10-19"})
    assert part.status_code == 206
    assert await part.get_data() == CONTENT[10:20]
    assert part.headers["Content-Range"] == "bytes 10-19/300"
    assert part.headers["Content-Length"] == "10"

    whole = await client.get(url, headers=owner.headers)
    assert whole.status_code == 200 and await whole.get_data() == CONTENT
    assert whole.headers["Accept-Ranges"] == "bytes"

    refused = await client.get(url, headers={**owner.headers, "Range": "bytes=300-"})
    assert refused.status_code == 416
    assert refused.headers["Content-Range"] == "bytes */300"
    assert "300 bytes" in (await refused.get_json())["message"]
