"""A throwaway SeaweedFS S3 server for a benchmark: `weed mini` from the binary that
scripts/services.sh builds once into the cache, on free loopback ports, stopped at exit.
An S3 server given by TEST_S3_ENDPOINT_URL (and TEST_S3_BUCKET, TEST_S3_ACCESS_KEY,
TEST_S3_SECRET_KEY) is used as it is.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.service import free_port

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sluice"
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
)


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    bucket: str
    access_key: str
    secret_key: str


def weed_binary() -> str:
    found = sorted(glob.glob(str(CACHE / "weed-*" / "weed")))
    if not found:
        raise SystemExit("no cached weed binary: run ./scripts/test.sh once (it builds SeaweedFS)")
    return found[-1]


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).read()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


@contextlib.contextmanager
def s3_endpoint() -> Iterator[S3Endpoint]:
    if os.environ.get("TEST_S3_ENDPOINT_URL"):
        yield S3Endpoint(
            os.environ["TEST_S3_ENDPOINT_URL"],
            os.environ.get("TEST_S3_BUCKET", "sluice-test"),
            os.environ.get("TEST_S3_ACCESS_KEY", ""),
            os.environ.get("TEST_S3_SECRET_KEY", ""),
        )
        return
    ports = {flag: free_port() for flag in PORT_FLAGS}
    key, secret = f"bench{secrets.token_hex(4)}", secrets.token_hex(20)
    with tempfile.TemporaryDirectory(prefix="sluice-bench-weed-") as folder:
        flags = [f"-{flag}={port}" for flag, port in ports.items()]
        process = subprocess.Popen(
            [weed_binary(), "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-bucket=bench", "-s3.autoCreateBucket=false", "-admin.ui=false", "-webdav=false",
             "-master.telemetry=false",
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.port.legacy=0",
             f"-filer.localSocket={folder}/filer.sock", f"-s3.localSocket={folder}/s3.sock",
             *flags],
            env={**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{ports['s3.port']}"
            deadline = time.monotonic() + 60
            while not answers(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("SeaweedFS did not start")
                time.sleep(0.3)
            yield S3Endpoint(url, "bench", key, secret)
        finally:
            process.terminate()
            process.wait(10)
            # weed puts its gRPC sockets in /tmp whatever TMPDIR says.
            for flag, port in ports.items():
                if flag.endswith(".grpc"):
                    for socket_path in glob.glob(f"/tmp/seaweedfs-*-grpc-{port}.sock"):
                        Path(socket_path).unlink(missing_ok=True)
