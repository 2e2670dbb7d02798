"""Requests/s and latency of an authenticated `GET /api/v1/users/me` against `GET /healthz`.

`/healthz` is the framework's floor (no auth, no SQL); the ratio shows what
authentication plus a user lookup cost. Usage: python -m bench.bench_auth [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

import httpx

from bench.loadgen import LoadResult, run_load
from bench.service import web_service


def row(name: str, result: LoadResult, baseline: LoadResult | None) -> str:
    ratio = f"{result.rps / baseline.rps:6.2f}x" if baseline else "  1.00x"
    return (
        f"{name:<28} {result.rps:9.0f} req/s  p50 {result.p50:7.2f} ms  "
        f"p99 {result.percentile(0.99):7.2f} ms  errors {result.errors:<4} rps vs floor {ratio}"
    )


async def measure(port: int, headers: dict[str, str], concurrency: int, seconds: float) -> None:
    print(f"concurrency {concurrency}, {seconds:.0f} s per endpoint")
    floor = await run_load("127.0.0.1", port, "/healthz", {}, concurrency, seconds)
    print(row("GET /healthz (floor)", floor, None))
    me = await run_load("127.0.0.1", port, "/api/v1/users/me", headers, concurrency, seconds)
    print(row("GET /api/v1/users/me (JWT)", me, floor))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    with web_service() as service:
        username, password = f"bench{uuid.uuid4().hex[:8]}", "bench-password-1"
        httpx.post(
            f"{service.base_url}/api/v1/users", json={"username": username, "password": password}
        ).raise_for_status()
        tokens = httpx.post(
            f"{service.base_url}/api/v1/session/oauth2/token",
            data={"username": username, "password": password},
        ).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        for concurrency in args.concurrency:
            asyncio.run(measure(service.port, headers, concurrency, args.seconds))


if __name__ == "__main__":
    main()
