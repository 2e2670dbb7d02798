"""Moving an install's files to another storage (`python -m backend storage copy --to`).

Every stored file (documents, chat images, avatars) is streamed from the source to the
target in chunks. A file the target already holds at the same size is skipped, so the
copy can be re-run after a failure or an interruption and only finishes what is left
(idempotent, resumable); since every write is all or nothing, an interrupted copy never
leaves a half file that a re-run would take as done. The source is left as it was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from backend.errors import ApiError
from backend.settings import Settings
from backend.storage.base import FileStorage, StoredObject
from backend.storage.configured import make_storage

Progress = Callable[["CopyReport"], None]


@dataclass
class CopyReport:
    total: int = 0
    copied: int = 0
    skipped: int = 0
    copied_bytes: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.copied + self.skipped + len(self.failures)

    def line(self) -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        rate = self.copied_bytes / seconds / 1024 / 1024
        return (
            f"  {self.done}/{self.total} files: {self.copied} copied "
            f"({self.copied_bytes / 1024 / 1024:.1f} MiB, {rate:.1f} MiB/s), "
            f"{self.skipped} already there, {len(self.failures)} failed"
        )

    def summary(self) -> str:
        text = f"copied {self.copied} files, {self.skipped} were already there"
        if self.failures:
            shown = "; ".join(f"{key}: {why}" for key, why in list(self.failures.items())[:5])
            text += f", {len(self.failures)} failed ({shown}): run the copy again"
        return text


async def copy_one(source: FileStorage, target: FileStorage, stored: StoredObject) -> bool:
    """Copy one file unless the target has it already; True when it was copied."""
    if await target.size(stored.key) == stored.size:
        return False
    async with target.writing(stored.key) as writer:
        async for chunk in source.read_chunks(stored.key):
            await writer.write(chunk)
    return True


async def copy_files(
    source: FileStorage,
    target: FileStorage,
    *,
    concurrency: int = 4,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every file of `source` that `target` lacks; failures are reported per file
    (the others go on), for a re-run to retry."""
    await target.check()
    files = [stored async for stored in source.listing()]
    report = CopyReport(total=len(files))
    queue: asyncio.Queue[StoredObject] = asyncio.Queue()
    for stored in files:
        queue.put_nowait(stored)

    async def work() -> None:
        while not queue.empty():
            stored = queue.get_nowait()
            try:
                if await copy_one(source, target, stored):
                    report.copied += 1
                    report.copied_bytes += stored.size
                else:
                    report.skipped += 1
            except Exception as error:
                report.failures[stored.key] = str(error) or type(error).__name__
            if progress is not None:
                progress(report)

    await asyncio.gather(*(work() for _ in range(max(1, concurrency))))
    return report


async def run_copy_command(settings: Settings, to_url: str, from_url: str | None) -> int:
    """`python -m backend storage copy`: prints progress and a summary; the exit status
    is 1 when a file failed (re-run to retry it)."""
    source, target = make_storage(settings, from_url), make_storage(settings, to_url)
    print(f"copying files from {source.description} to {target.description}", flush=True)
    last = 0.0

    def progress(report: CopyReport) -> None:
        nonlocal last
        if report.done == report.total or time.monotonic() - last >= 1.0:
            last = time.monotonic()
            print(report.line(), flush=True)

    try:
        report = await copy_files(source, target, progress=progress)
    except ApiError as error:
        print(error.message, flush=True)
        return 1
    finally:
        await source.close()
        await target.close()
    print(report.summary())
    if not report.failures:
        print(f"now set STORAGE_URL={to_url} and restart the web process and the workers")
    return 1 if report.failures else 0
