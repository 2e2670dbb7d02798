"""Scale-out: the multi-replica layout of tests/test_replicas.py (nginx with TLS in front of
web replicas, chat and ingest workers, each with its own DATA_DIR, on PostgreSQL, Redis,
Elasticsearch and S3), with one web replica and one ingest worker, then with two of each,
in the same run.

- **Answers**: `--answers` streamed answers (30 tokens from the fake OpenAI-compatible
  upstream, no pacing beyond its 500 tokens/s) at `--concurrency` at once, each on a
  new TLS connection through nginx: answers/s and first-token p50/p99 (from sending the
  request to reading the first token).
- **Ingestion**: `--documents` documents of 40 paragraphs uploaded and parsed at once
  through nginx (the fake embedding upstream, no delay): chunks/s until every one is
  DONE.

On a 2-core machine a second replica adds no core: the ratio says how much the second
process costs or saves (spreading, more event loops), and that nothing breaks or slows
badly. Needs the four services: `./scripts/bench_scaleout.sh` starts them as `make
test` does and runs this.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from backend.database import close_database, migrate_database, open_database
from backend.settings import Settings
from tests.support.accounts import Account, create_account
from tests.support.knowledge import MULTIPART, multipart
from tests.support.live_server import create_chat_session
from tests.support.replica_stack import ReplicaStack, missing_services, replica_stack
from tests.support.sse_client import events

TEXT = "\n\n".join(f"Paragraph {n}: the heron named Quillon nests by lake {n}." for n in range(40))


async def one_answer(stack: ReplicaStack, account: Account) -> float:
    """Seconds from the request to the first token of one streamed answer."""
    session = await create_chat_session(account)
    body = {"session_id": session.id, "question": "Say something.", "stream": True}
    started = time.perf_counter()
    first = None
    async with stack.client(account) as http, http.stream("POST", "/api/v1/tasks", json=body) as r:
        assert r.status_code == 200, await r.aread()
        async for frame in events(r):
            if frame.event == "token" and first is None:
                first = time.perf_counter() - started
            if frame.terminal:
                assert frame.event == "done", frame
                break
    assert first is not None
    return first


async def answers(stack: ReplicaStack, total: int, concurrency: int) -> dict[str, float]:
    accounts = [await create_account(stack.settings, password=False) for _ in range(concurrency)]
    await one_answer(stack, accounts[0])  # warm-up: connections, caches
    firsts: list[float] = []

    async def runner(account: Account, count: int) -> None:
        for _ in range(count):
            firsts.append(await one_answer(stack, account))

    started = time.perf_counter()
    share = total // concurrency
    await asyncio.gather(*(runner(account, share) for account in accounts))
    elapsed = time.perf_counter() - started
    firsts.sort()
    return {
        "answers_per_second": len(firsts) / elapsed,
        "first_p50_ms": statistics.median(firsts) * 1000,
        "first_p99_ms": firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))] * 1000,
    }


async def ingestion(stack: ReplicaStack, documents: int) -> float:
    """Chunks per second for `documents` uploaded and parsed together."""
    account = await create_account(stack.settings, password=False)
    async with stack.client(account) as http:
        created = await http.post(
            "/api/v1/datasets", json={"name": "bench", "parser_config": {"chunk_token_num": 16}}
        )
        dataset_id = created.json()["data"]["id"]
        files = [(f"lakes-{n}.txt", TEXT.encode()) for n in range(documents)]
        started = time.perf_counter()
        uploaded = await http.post(
            f"/api/v1/datasets/{dataset_id}/documents",
            content=multipart(files),
            headers={"Content-Type": MULTIPART},
        )
        ids = [document["id"] for document in uploaded.json()["data"]]
        await http.post(f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": ids})
        while True:
            listed = await http.get(
                f"/api/v1/datasets/{dataset_id}/documents", params={"page_size": documents}
            )
            docs = listed.json()["data"]["docs"]
            if all(doc["run"] in ("DONE", "FAIL") for doc in docs):
                break
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
    assert all(doc["run"] == "DONE" for doc in docs), docs
    return sum(doc["chunk_count"] for doc in docs) / elapsed


async def measure(base: Settings, replicas: int, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as root:
        async with replica_stack(
            base, Path(root), webs=replicas, chat_workers=replicas, ingest_workers=replicas
        ) as (stack, _):
            figures = await answers(stack, args.answers, args.concurrency)
            figures["chunks_per_second"] = await ingestion(stack, args.documents)
    return figures


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        base = Settings(
            database_url=os.environ["BENCH_DATABASE_URL"],
            redis_url=os.environ["REDIS_URL"],
            redis_prefix=f"bench-{uuid.uuid4().hex[:6]}",
            data_dir=Path(data_dir),
            secret_key=uuid.uuid4().hex * 2,
        )
        if missing := missing_services(base):
            raise SystemExit("needs " + ", ".join(missing))
        await migrate_database(base)
        await open_database(base)
        try:
            one = await measure(base, 1, args)
            two = await measure(base, 2, args)
        finally:
            await close_database()
    print(f"{'figure':24} {'1 replica':>12} {'2 replicas':>12} {'2/1':>7}")
    for name in one:
        print(f"{name:24} {one[name]:12.1f} {two[name]:12.1f} {two[name] / one[name]:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--documents", type=int, default=8)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
