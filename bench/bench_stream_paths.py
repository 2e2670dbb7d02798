"""The paths issue 16 changed, each measured old next to new in one process, alternating.

End-to-end figures (bench/bench_streaming.py) need the machine to themselves; when other
work shares the VM, Sluice's processes get a fraction of a core and every latency and
per-answer figure moves with the neighbours. These measure the CPU this process spends
(`time.process_time`) on one path at a time, old and new in alternating rounds, so
the ratio holds whatever the load:

- reading an OpenAI-compatible stream: the `openai` SDK's streaming response (as the
  provider read it before) against `openai_sse.ChatStreamClient`, per token and per
  request, against the fake upstream in its own process (60-token answers, no pacing);
- enqueueing a chat job: arq's `enqueue_job` plus the wake XADD against
  `job_queue.enqueue` (one Lua round trip);
- encoding a token frame: sse-starlette's `ServerSentEvent` against `sse.encode_entry`;
- a token event's JSON: pydantic's `model_dump_json` against `append_token`'s orjson.

Usage: python -m bench.bench_stream_paths [--rounds N]
Needs Redis at REDIS_URL (default redis://127.0.0.1:6379/8).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable

import openai
import orjson
from arq.connections import ArqRedis, RedisSettings, create_pool
from sse_starlette import ServerSentEvent

from backend import job_queue
from backend.constants import queue_wake_key
from backend.providers.base import Usage
from backend.providers.openai_sse import ChatStreamClient
from backend.streams.sse import SEPARATOR, encode_entry
from backend.streams.task_stream import StreamEntry
from bench.service import fake_upstream
from schemas.events import EventType, TokenEvent

TOKENS = 60
BODY = {
    "model": "fake-gpt",
    "messages": [{"role": "user", "content": "Tell me a story."}],
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": TOKENS,
}


async def sdk_read(client: openai.AsyncOpenAI) -> int:
    """The provider's read before issue 16: SDK request, raw lines, json per chunk."""
    tokens = 0
    async with client.chat.completions.with_streaming_response.create(
        model=BODY["model"],
        messages=[],
        stream=True,
        extra_body={k: v for k, v in BODY.items() if k not in ("model", "stream")},
    ) as response:
        async for line in response.iter_lines():
            if line.startswith("data:") and line != "data: [DONE]":
                chunk = orjson.loads(line[5:])
                if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                    tokens += 1
    return tokens


async def lean_read(client: ChatStreamClient) -> int:
    tokens = 0
    async for burst in client.bursts(BODY, "bench", counted=lambda text: Usage(0, 0)):
        tokens += sum(1 for item in burst if type(item) is str and item)
    return tokens


async def cpu_of(
    work: Callable[[], Awaitable[int]], times: int, parallel: int
) -> tuple[float, int]:
    """CPU seconds of this process for `times` runs of `work`, `parallel` at a time."""
    done = 0
    started = time.process_time()
    for _ in range(times // parallel):
        done += sum(await asyncio.gather(*(work() for _ in range(parallel))))
    return time.process_time() - started, done


def line(name: str, old: float, new: float, unit: str) -> None:
    print(f"{name:<44} {old:>10.1f} {new:>10.1f} {unit:<14} {new / old:>6.2f}x")


async def provider_paths(rounds: int) -> None:
    async with fake_upstream(TOKENS) as base_url:
        sdk = openai.AsyncOpenAI(
            base_url=base_url, api_key="k", max_retries=0, http_client=openai.DefaultAioHttpClient()
        )
        lean = ChatStreamClient(
            base_url, "k", timeout=30, connect_timeout=10, max_retries=0, key_setting="K"
        )
        try:
            for _ in range(100):
                try:
                    await lean_read(lean)
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            totals = {"sdk": [0.0, 0], "lean": [0.0, 0]}
            for _ in range(rounds):
                for name, work in (
                    ("sdk", lambda: sdk_read(sdk)),
                    ("lean", lambda: lean_read(lean)),
                ):
                    seconds, tokens = await cpu_of(work, 200, 20)
                    totals[name][0] += seconds
                    totals[name][1] += tokens
            per = {k: v[0] / v[1] * 1e6 for k, v in totals.items()}
            line(
                "provider read, CPU per token (answers of 60)",
                per["sdk"],
                per["lean"],
                "µs",
            )
        finally:
            await sdk.close()
            await lean.aclose()


async def enqueue_paths(rounds: int) -> None:
    pool: ArqRedis = await create_pool(
        RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8"))
    )
    queue = f"bench-paths-{uuid.uuid4().hex[:8]}"

    async def arq_way() -> int:
        await pool.enqueue_job("generate_answer", "t", _job_id=uuid.uuid4().hex, _queue_name=queue)
        await pool.xadd(queue_wake_key(queue), {"j": "1"}, maxlen=64, approximate=True)
        return 1

    async def lean_way() -> int:
        await job_queue.enqueue(pool, queue, "generate_answer", "t", job_id=uuid.uuid4().hex)
        return 1

    try:
        totals = {"arq": [0.0, 0], "lean": [0.0, 0]}
        for _ in range(rounds):
            for name, work in (("arq", arq_way), ("lean", lean_way)):
                seconds, count = await cpu_of(work, 400, 1)
                totals[name][0] += seconds
                totals[name][1] += count
        per = {k: v[0] / v[1] * 1e6 for k, v in totals.items()}
        line("enqueue a chat job (and wake), CPU each", per["arq"], per["lean"], "µs")
    finally:
        keys = [key async for key in pool.scan_iter("arq:job:*")]
        for key in keys:
            await pool.delete(key)
        await pool.delete(queue, queue_wake_key(queue))
        await pool.aclose()


def encode_paths(rounds: int) -> None:
    data = TokenEvent(delta="tok1 tok2 ").model_dump_json(exclude={"type"})
    entry = StreamEntry(id="1733480000000-12", type=EventType.TOKEN, data=data)
    event = TokenEvent(delta="tok1 tok2 ")

    def timed(work: Callable[[], object], times: int = 20000) -> float:
        started = time.process_time()
        for _ in range(times):
            work()
        return (time.process_time() - started) / times * 1e6

    old = sum(
        timed(
            lambda: ServerSentEvent(
                id=entry.id, event=entry.type, data=data, sep=SEPARATOR
            ).encode()
        )
        for _ in range(rounds)
    )
    new = sum(timed(lambda: encode_entry(entry)) for _ in range(rounds))
    line("SSE frame of a token event, CPU each", old / rounds, new / rounds, "µs")
    old = sum(
        timed(lambda: TokenEvent(delta=event.delta).model_dump_json(exclude={"type"}))
        for _ in range(rounds)
    )
    new = sum(timed(lambda: orjson.dumps({"delta": event.delta}).decode()) for _ in range(rounds))
    line("token event JSON, CPU each", old / rounds, new / rounds, "µs")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    print(f"{'path':<44} {'old':>10} {'new':>10} {'unit':<14} {'ratio':>7}")
    await provider_paths(rounds)
    await enqueue_paths(rounds)
    encode_paths(rounds)


if __name__ == "__main__":
    asyncio.run(main())
