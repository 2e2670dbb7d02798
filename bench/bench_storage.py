"""File storage throughput: upload and download MB/s through Sluice's storage interface,
on S3 (a local SeaweedFS) next to the local directory, in the same run.

Files go in as uploads do (chunks of 256 KiB into `writing`, multipart above the part
size on S3) and come back as downloads do (`read_chunks`). Each figure is the median of
`--rounds`; S3 is reported as a ratio of the local directory's. With obstore installed
(`pip install obstore`, not a dependency) the same files are also moved by obstore, the
Rust client Sluice did not choose, for the comparison the README quotes.

    .venv/bin/python -m bench.bench_storage [--files 8] [--mib 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable

from backend.settings import Settings
from backend.storage.base import FileStorage
from backend.storage.configured import make_storage
from bench.seaweedfs import S3Endpoint, s3_endpoint

CHUNK = 256 * 1024
MIB = 1024 * 1024


async def upload(storage: FileStorage, keys: list[str], data: bytes) -> None:
    async def one(key: str) -> None:
        async with storage.writing(key) as writer:
            for start in range(0, len(data), CHUNK):
                await writer.write(data[start : start + CHUNK])

    await asyncio.gather(*(one(key) for key in keys))


async def download(storage: FileStorage, keys: list[str], _: bytes) -> None:
    async def one(key: str) -> None:
        async for _chunk in storage.read_chunks(key):
            pass

    await asyncio.gather(*(one(key) for key in keys))


async def rate(
    step: Callable[[FileStorage, list[str], bytes], Awaitable[None]],
    storage: FileStorage,
    keys: list[str],
    data: bytes,
) -> float:
    began = time.perf_counter()
    await step(storage, keys, data)
    return len(keys) * len(data) / MIB / (time.perf_counter() - began)


async def measure(
    storage: FileStorage, files: int, data: bytes, rounds: int
) -> tuple[float, float]:
    ups, downs = [], []
    for _ in range(rounds):
        keys = [f"documents/bench/{uuid.uuid4().hex}.bin" for _ in range(files)]
        ups.append(await rate(upload, storage, keys, data))
        downs.append(await rate(download, storage, keys, data))
        for key in keys:
            await storage.delete(key)
    return statistics.median(ups), statistics.median(downs)


async def obstore_rates(
    endpoint: S3Endpoint, files: int, data: bytes, rounds: int
) -> tuple[float, float] | None:
    try:
        import obstore
        from obstore.store import S3Store
    except ImportError:
        return None
    store = S3Store(
        endpoint.bucket,
        endpoint=endpoint.url,
        access_key_id=endpoint.access_key,
        secret_access_key=endpoint.secret_key,
        region="us-east-1",
        client_options={"allow_http": True},
    )

    async def chunks():
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    ups, downs = [], []
    for _ in range(rounds):
        keys = [f"obstore/{uuid.uuid4().hex}.bin" for _ in range(files)]
        began = time.perf_counter()
        await asyncio.gather(*(obstore.put_async(store, key, chunks()) for key in keys))
        ups.append(files * len(data) / MIB / (time.perf_counter() - began))

        async def read(key: str) -> None:
            async for _chunk in await obstore.get_async(store, key):
                pass

        began = time.perf_counter()
        await asyncio.gather(*(read(key) for key in keys))
        downs.append(files * len(data) / MIB / (time.perf_counter() - began))
        await obstore.delete_async(store, keys)
    return statistics.median(ups), statistics.median(downs)


async def main(files: int, mib: int, rounds: int) -> None:
    data = (bytes(range(256)) * (mib * MIB // 256 + 1))[: mib * MIB]
    base = Settings(_env_file=None)
    print(f"{files} files of {mib} MiB at once, median of {rounds} rounds (MB/s = MiB/s)")
    with tempfile.TemporaryDirectory() as folder, s3_endpoint() as endpoint:
        local = make_storage(base, f"file://{folder}")
        s3_settings = base.model_copy(
            update={
                "s3_endpoint_url": endpoint.url,
                "aws_access_key_id": endpoint.access_key,
                "aws_secret_access_key": endpoint.secret_key,
            }
        )
        s3 = make_storage(s3_settings, f"s3://{endpoint.bucket}/bench-{uuid.uuid4().hex[:6]}")
        for attempt in range(120):  # the bucket is made shortly after S3 answers
            try:
                await s3.check()
                break
            except Exception:
                if attempt == 119:
                    raise
                await asyncio.sleep(0.5)
        local_up, local_down = await measure(local, files, data, rounds)
        s3_up, s3_down = await measure(s3, files, data, rounds)
        print(f"  local directory   upload {local_up:8.1f} MB/s   download {local_down:8.1f} MB/s")
        print(
            f"  S3 (aiobotocore)  upload {s3_up:8.1f} MB/s   download {s3_down:8.1f} MB/s"
            f"   = {s3_up / local_up:.2f}x / {s3_down / local_down:.2f}x the local directory"
        )
        other = await obstore_rates(endpoint, files, data, rounds)
        if other is not None:
            print(
                f"  S3 (obstore)      upload {other[0]:8.1f} MB/s   download {other[1]:8.1f} MB/s"
                f"   = {other[0] / s3_up:.2f}x / {other[1] / s3_down:.2f}x aiobotocore"
            )
        await s3.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.files, arguments.mib, arguments.rounds))
