"""What following a stream's credential costs per SSE frame (backend/http/credential_guard.py).

Every event stream's body goes through `guarded_body`, which can end it when its
credential is revoked. This drains the same in-memory body of token-sized frames bare
and guarded, alternately in one run, and prints the added microseconds per frame and
the ratio (a task's answer is a few hundred frames). Usage:
python -m bench.bench_credential_guard [--frames 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator

from backend.http.credential_guard import guarded_body
from backend.models import User
from backend.services.authentication import Credential

FRAME = b'id: 1700000000000-0\nevent: token\ndata: {"delta":"word"}\n\n'


class StillWatch:
    """A watch whose credentials never end: only the per-frame path is measured."""

    async def watch(self, credential: Credential, on_end: object, mark: int) -> object:
        return object()

    def unwatch(self, watched: object) -> None:
        pass


async def frames(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield FRAME


async def drain(body: AsyncIterator[bytes]) -> float:
    started = time.perf_counter()
    async for _ in body:
        pass
    return time.perf_counter() - started


async def main(count: int, rounds: int) -> None:
    credential = Credential(user=User(id=1), token="bench")
    bare, guarded = [], []
    for _ in range(rounds):
        bare.append(await drain(frames(count)) / count * 1e6)
        body = guarded_body(frames(count), StillWatch(), credential, 0, bytes)  # type: ignore[arg-type]
        guarded.append(await drain(body) / count * 1e6)
    floor, cost = statistics.median(bare), statistics.median(guarded)
    print(f"{count} frames x {rounds} rounds (medians)")
    print(f"bare body        {floor:6.2f} us/frame")
    added = cost - floor
    print(f"guarded body     {cost:6.2f} us/frame  added {added:5.2f} us  ({cost / floor:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.frames, args.rounds))
