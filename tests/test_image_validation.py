"""Avatars and chat uploads share one image check: pixels counted from the header before
any decoding, every pixel decoded after (truncated files refused), decodes run in a
bounded pool, and a decompression bomb costs the web process almost no memory."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageFile
from quart import Quart
from quart.datastructures import FileStorage
from quart.testing import QuartClient

from tests.support.accounts import Account, create_account
from tests.support.images import image_bytes, png_header_only, webp_bomb
from tests.support.live_server import LiveServer

AVATAR = "/api/v1/users/me/avatar"
UPLOADS = "/api/v1/uploads"
MB = 1024 * 1024


def as_file(data: bytes) -> dict[str, FileStorage]:
    return {"file": FileStorage(io.BytesIO(data), "image", "file", "application/octet-stream")}


async def put_avatar(client: QuartClient, account: Account, data: bytes):
    return await client.put(AVATAR, files=as_file(data), headers=account.headers)


async def post_upload(client: QuartClient, account: Account, data: bytes):
    return await client.post(UPLOADS, files=as_file(data), headers=account.headers)


Send = Callable[[QuartClient, Account, bytes], Awaitable]
ROUTES = pytest.mark.parametrize("send", [put_avatar, post_upload], ids=["avatar", "upload"])


class DecodeSpy:
    """Counts pixel decodes (`ImageFile.load`) and the most that ran at once."""

    def __init__(self, hold_seconds: float = 0.0) -> None:
        self.hold_seconds = hold_seconds
        self.lock = threading.Lock()
        self.calls = self.active = self.most_at_once = 0
        self.original = ImageFile.ImageFile.load

    def install(self, monkeypatch: pytest.MonkeyPatch) -> DecodeSpy:
        spy = self

        def load(image: ImageFile.ImageFile):
            with spy.lock:
                spy.calls += 1
                spy.active += 1
                spy.most_at_once = max(spy.most_at_once, spy.active)
            try:
                time.sleep(spy.hold_seconds)
                return spy.original(image)
            finally:
                with spy.lock:
                    spy.active -= 1

        monkeypatch.setattr(ImageFile.ImageFile, "load", load)
        return self


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


@pytest.fixture
async def configured(app: Quart) -> AsyncIterator[Callable[..., None]]:
    """Change the app's settings for one test."""
    previous = app.config["SETTINGS"]

    def configure(**changes: object) -> None:
        app.config["SETTINGS"] = previous.model_copy(update=changes)

    yield configure
    app.config["SETTINGS"] = previous


BOMBS = {
    "webp-6000x6000": lambda: webp_bomb(6000),
    "png-8000x8000": lambda: png_header_only(8000, 8000),
    "png-30000x30000": lambda: png_header_only(30000, 30000),
}


@ROUTES
@pytest.mark.parametrize("bomb", list(BOMBS))
async def test_a_bomb_is_413_before_any_pixel_is_decoded(
    client: QuartClient, user: Account, monkeypatch: pytest.MonkeyPatch, send: Send, bomb: str
) -> None:
    data = BOMBS[bomb]()
    assert len(data) < 64 * 1024
    spy = DecodeSpy().install(monkeypatch)
    response = await send(client, user, data)
    assert response.status_code == 413, await response.get_data(as_text=True)
    assert "pixels" in (await response.get_json())["message"]
    assert spy.calls == 0


@ROUTES
async def test_the_pixel_limit_is_a_setting(
    client: QuartClient, user: Account, configured: Callable[..., None], send: Send
) -> None:
    configured(image_max_pixels=100)
    assert (await send(client, user, image_bytes("PNG", (10, 10)))).status_code in (200, 201)
    response = await send(client, user, image_bytes("PNG", (11, 10)))
    assert response.status_code == 413
    assert "11x10" in (await response.get_json())["message"]


@ROUTES
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
async def test_a_truncated_image_is_400(
    client: QuartClient, user: Account, send: Send, fmt: str
) -> None:
    whole = encoded(Image.effect_noise((256, 256), 50).convert("RGB"), fmt)
    response = await send(client, user, whole[: len(whole) // 2])
    assert response.status_code == 400, await response.get_data(as_text=True)
    assert "truncated" in (await response.get_json())["message"]


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
async def test_a_whole_image_is_uploaded(
    client: QuartClient, user: Account, fmt: str, content_type: str
) -> None:
    response = await post_upload(client, user, image_bytes(fmt, (40, 30)))
    assert response.status_code == 201, await response.get_data(as_text=True)
    record = (await response.get_json())["data"]
    assert (record["content_type"], record["width"], record["height"]) == (content_type, 40, 30)


async def test_a_phone_cameras_multi_picture_jpeg_is_a_jpeg(
    client: QuartClient, user: Account
) -> None:
    """Pillow names these MPO; they were refused as an unsupported format."""
    second = Image.new("RGB", (40, 30), "red")
    data = encoded(Image.new("RGB", (40, 30), "blue"), "MPO", save_all=True, append_images=[second])
    response = await post_upload(client, user, data)
    assert response.status_code == 201, await response.get_data(as_text=True)
    record = (await response.get_json())["data"]
    assert record["content_type"] == "image/jpeg"
    assert (await put_avatar(client, user, data)).status_code == 200


async def test_concurrent_decodes_are_bounded_by_the_setting(
    client: QuartClient,
    user: Account,
    configured: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configured(image_decode_concurrency=2)
    spy = DecodeSpy(hold_seconds=0.2).install(monkeypatch)
    data = image_bytes("PNG", (300, 300))
    responses = await asyncio.gather(
        *(put_avatar(client, user, data) for _ in range(3)),
        *(post_upload(client, user, data) for _ in range(3)),
    )
    assert [r.status_code for r in responses] == [200] * 3 + [201] * 3
    assert spy.calls >= 6
    assert spy.most_at_once == 2


def group_pids(leader: int) -> list[int]:
    """The server process and its children (Hypercorn may serve from a child)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == leader:  # process group id
            pids.append(int(stat.parent.name))
    return pids


def reset_peak(pid: int) -> None:
    """Make the process's peak memory (VmHWM) its current memory."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


async def test_bomb_uploads_add_little_memory_to_the_web_process(
    live_processes: LiveServer, live_user: Account
) -> None:
    """Four bomb avatars and four bomb uploads at once, against the real server: the
    server's peak memory (VmHWM, reset first) grows by a few MB, not by the 500 MB each
    bomb decodes to."""
    accounts = [live_user] + [await create_account(live_processes.settings) for _ in range(3)]
    bomb = webp_bomb(6000)
    pids = group_pids(live_processes.server.process.pid)
    for pid in pids:
        reset_peak(pid)
    before = {pid: memory_kb(pid, "VmRSS") for pid in pids}
    async with httpx.AsyncClient(base_url=live_processes.base_url, timeout=30) as http:
        sent = []
        for account in accounts:
            sent.append(http.put(AVATAR, files={"file": ("a.webp", bomb)}, headers=account.headers))
            sent.append(
                http.post(UPLOADS, files={"file": ("a.webp", bomb)}, headers=account.headers)
            )
        responses = await asyncio.gather(*sent)
    assert [r.status_code for r in responses] == [413] * 8, [r.text for r in responses]
    added_mb = sum(memory_kb(pid, "VmHWM") - before[pid] for pid in pids) / 1024
    print(f"peak RSS added by 8 concurrent 6000x6000 WebP bombs: {added_mb:.1f} MB")
    assert added_mb < 40
