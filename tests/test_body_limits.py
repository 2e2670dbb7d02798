"""Body limits at the HTTP edge, over real sockets to Hypercorn: JSON routes take a small
body, uploads their own, refused from Content-Length or as soon as a chunked body passes
the limit; forms are bounded in size and fields; and the web process's memory stays
bounded under the hostile bodies that once took it to gigabytes."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from quart.testing import QuartClient

from backend.http.body_limits import MULTIPART_OVERHEAD
from backend.http.requests import FORM_MAX_FIELDS
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.live_server import LiveServer, start_hypercorn
from tests.support.raw_http import RawResponse, repeated, send_request

MB = 1024 * 1024
JSON_HEADERS = {"Content-Type": "application/json"}
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
BOUNDARY = "sluiceboundary"
MULTIPART_HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
# What the kernel's socket buffers and Hypercorn's queue may hold beyond what the
# server has read when it refuses: a streamed refusal is "the limit plus this", not
# the whole body.
BUFFERED_SLACK = 16 * MB


def small_objects(total: int) -> Iterator[bytes]:
    """A JSON registration padded with `total` bytes of tiny objects, the costliest shape
    to parse (~25 bytes of memory per byte)."""
    head = b'{"username": "hostile", "password": "long enough", "pad": ['
    yield head
    yield from repeated(b'{"a":1},', total - len(head) - 8)
    yield b'{"a":1}]}'


def many_fields(count: int) -> Iterator[bytes]:
    """An OAuth2 login form with `count` extra fields."""
    yield b"username=hostile&password=x"
    yield from repeated(b"&a=1", 4 * count)


def multipart_file(size: int) -> Iterator[bytes]:
    """A multipart body whose `file` part is `size` bytes."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    yield from repeated(b"\x89PNG\r\n\x1a\n", size)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def assert_refused_413(response: RawResponse, limit: int) -> None:
    assert response.status == 413, response.body[:300]
    body = response.json()
    assert body["code"] == 413
    assert str(limit) in body["message"]


async def test_json_over_the_limit_is_refused_from_content_length(
    live_processes: LiveServer,
) -> None:
    limit = live_processes.settings.json_body_max_bytes
    size = 32 * MB
    response = await send_request(
        live_processes.port,
        "POST",
        "/api/v1/users",
        small_objects(size),
        headers=JSON_HEADERS,
        content_length=size,
    )
    assert_refused_413(response, limit)
    # Answered from the header: the server did not wait for the body.
    assert response.sent < size // 2


async def test_chunked_json_is_refused_as_soon_as_it_passes_the_limit(
    live_processes: LiveServer,
) -> None:
    limit = live_processes.settings.json_body_max_bytes
    response = await send_request(
        live_processes.port, "POST", "/api/v1/users", small_objects(32 * MB), headers=JSON_HEADERS
    )
    assert_refused_413(response, limit)
    assert response.sent < limit + BUFFERED_SLACK


async def test_json_under_the_limit_is_still_served(live_processes: LiveServer) -> None:
    """A body just under the limit reaches the route (a 422 for the unknown field type)."""
    limit = live_processes.settings.json_body_max_bytes
    body = b'{"username": "x", "password": "' + b"p" * (limit - 100) + b'"}'
    response = await send_request(
        live_processes.port, "POST", "/api/v1/users", [body], headers=JSON_HEADERS
    )
    assert response.status == 422


@pytest.fixture
async def live_account(live_settings: Settings) -> Account:
    return await create_account(live_settings, password=False)


@pytest.mark.parametrize(
    ("method", "path", "limit_of"),
    [
        ("POST", "/api/v1/uploads", lambda s: s.upload_image_max_bytes),
        ("PUT", "/api/v1/users/me/avatar", lambda s: s.avatar_max_bytes),
    ],
    ids=["upload", "avatar"],
)
async def test_chunked_multipart_upload_is_refused_as_it_streams(
    live_processes: LiveServer, live_account: Account, method: str, path: str, limit_of
) -> None:
    """300 MB chunked: refused once the file limit (plus multipart overhead) is passed."""
    limit = limit_of(live_processes.settings) + MULTIPART_OVERHEAD
    started = time.monotonic()
    response = await send_request(
        live_processes.port,
        method,
        path,
        multipart_file(300 * MB),
        headers={**MULTIPART_HEADERS, **live_account.headers},
    )
    assert_refused_413(response, limit)
    assert response.sent < limit + BUFFERED_SLACK
    assert time.monotonic() - started < 10


async def test_a_form_with_two_million_fields_is_refused_fast(live_processes: LiveServer) -> None:
    """Refused from its size at once, while the server keeps answering others."""
    port = live_processes.port

    async def health_latency() -> float:
        async with httpx.AsyncClient(timeout=10) as client:
            await asyncio.sleep(0.05)
            started = time.monotonic()
            assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            return time.monotonic() - started

    started = time.monotonic()
    chunked, latency = await asyncio.gather(
        send_request(
            port,
            "POST",
            "/api/v1/session/oauth2/token",
            many_fields(2_000_000),
            headers=FORM_HEADERS,
        ),
        health_latency(),
    )
    assert_refused_413(chunked, live_processes.settings.json_body_max_bytes)
    assert time.monotonic() - started < 5
    assert latency < 1


async def test_a_form_under_the_size_limit_is_bounded_in_fields(
    live_processes: LiveServer,
) -> None:
    """200,000 fields in 800 KB: under the byte limit, refused by the field count."""
    response = await send_request(
        live_processes.port,
        "POST",
        "/api/v1/session/oauth2/token",
        many_fields(200_000),
        headers=FORM_HEADERS,
    )
    assert response.status == 413, response.body
    assert f"at most {FORM_MAX_FIELDS}" in response.json()["message"]


def peak_rss_bytes(pid: int) -> int:
    """The highest VmHWM (peak resident set) of `pid` and its descendants (the Hypercorn
    parent serves through a worker child)."""
    peak = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        status = Path(f"/proc/{current}/status")
        if not status.exists():
            continue
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) * 1024)
        for task in Path(f"/proc/{current}/task").iterdir():
            children = (task / "children").read_text().split()
            pending.extend(int(child) for child in children)
    return peak


@pytest.fixture
async def fresh_server(live_settings: Settings, live_log_dir: Path) -> AsyncIterator[LiveServer]:
    """A Hypercorn of the test's own, so its peak memory is this test's alone."""
    server = await start_hypercorn(live_settings, live_log_dir)
    yield server
    server.server.stop()


async def test_peak_memory_under_hostile_bodies_stays_under_300_mb(
    fresh_server: LiveServer, live_account: Account
) -> None:
    """The hostile bodies of the report, several at once; the web process's peak RSS."""
    port = fresh_server.port
    idle = peak_rss_bytes(fresh_server.server.process.pid)
    size = 32 * MB
    users = "/api/v1/users"
    token = "/api/v1/session/oauth2/token"
    upload_headers = {**MULTIPART_HEADERS, **live_account.headers}
    hostile = [
        *(
            send_request(
                port, "POST", users, small_objects(size), headers=JSON_HEADERS, content_length=size
            )
            for _ in range(3)
        ),
        *(
            send_request(port, "POST", users, small_objects(size), headers=JSON_HEADERS)
            for _ in range(3)
        ),
        send_request(port, "POST", token, many_fields(2_000_000), headers=FORM_HEADERS),
        send_request(port, "POST", token, many_fields(200_000), headers=FORM_HEADERS),
        send_request(
            port, "POST", "/api/v1/uploads", multipart_file(300 * MB), headers=upload_headers
        ),
        send_request(
            port, "PUT", "/api/v1/users/me/avatar", multipart_file(300 * MB), headers=upload_headers
        ),
    ]
    # Bodies just under the limits, which are parsed: many small values, deep nesting.
    under = fresh_server.settings.json_body_max_bytes - 1024
    hostile += [
        send_request(port, "POST", users, small_objects(under), headers=JSON_HEADERS)
        for _ in range(3)
    ]
    hostile.append(
        send_request(
            port,
            "POST",
            users,
            itertools.chain(repeated(b"[", under // 2), repeated(b"]", under // 2)),
            headers=JSON_HEADERS,
        )
    )
    responses = await asyncio.gather(*hostile)
    peak = peak_rss_bytes(fresh_server.server.process.pid)
    print(f"web process peak RSS: {idle / MB:.0f} MB idle, {peak / MB:.0f} MB under attack")
    assert peak < 300 * MB
    assert all(400 <= response.status < 500 for response in responses), [
        (r.status, r.body[:100]) for r in responses
    ]


async def test_routes_that_carry_images_take_a_bigger_json_body(
    client: QuartClient, owner: Account, settings: Settings
) -> None:
    """A 2 MB inline image is over the default limit but within JSON_MEDIA_BODY_MAX_BYTES:
    the task route reads it (and finds no such session); registration refuses 2 MB."""
    image = {"type": "image", "url": "data:image/png;base64," + "A" * (2 * MB)}
    body = {"session_id": "0" * 32, "content": [{"type": "text", "text": "what?"}, image]}
    assert settings.json_body_max_bytes < 2 * MB < settings.json_media_body_max_bytes
    task = await client.post("/api/v1/tasks", json=body, headers=owner.headers)
    assert task.status_code == 404, await task.get_json()
    users = await client.post("/api/v1/users", json={"username": "q" * (2 * MB)})
    assert users.status_code == 413
