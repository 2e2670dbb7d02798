"""Streaming benchmark: Sluice against the raw provider it streams from, in one run.

Starts its own fake OpenAI-compatible server (fixed token rate), Redis if none answers,
a Hypercorn web process and an arq chat worker, then measures:

(a) time to first token through Sluice (POST /api/v1/tasks with `stream: true` → first
    `token` event at the client) next to the provider's own first-token time, p50/p99,
    at 1, 20 and more concurrent streams; the difference is what Sluice adds. Each level
    also prints its demand (the cores the harness and Sluice need for the load it offers)
    and the cores the web and worker processes used: the highest level whose added p99
    stays within 100 ms, divided by those cores, is the streams per core;
(b) delivered tokens/s and CPU (web + worker processes) per answer and per 1k tokens at
    500 concurrent streams, next to the raw provider's tokens/s and CPU;
(f) where an answer's CPU goes: CPU per answer of the web and worker processes for
    answers of 2 and of 60 tokens at the same load, solved for a fixed part per answer
    and a part per token;
(c) RSS of the web process holding 5,000 idle open SSE streams.

With `--base DIR` (another checkout, e.g. `git worktree add /tmp/sluice-base <commit>`)
every phase runs first against that code and then against this one, in the same run,
and a last table puts both next to the targets of docs/streaming.md.

Usage: python -m bench.bench_streaming [--quick] [--base DIR] [--database-url URL]
       [--chat-workers N] [--web-workers N] [--tokens N] [--rate TOKENS_PER_S]
       [--streams N] [--ttft-streams 1,20,40] [--phases abfc] [--profile DIR]
Targets: CPU per 60-token answer <= 16 ms and half the base; tokens/s at 500 streams
>= 0.25x the raw provider; added first token p50 <= 8 ms, p99 <= 15 ms at 1 stream and
p99 <= 50 ms at 20; >= 50 streams per core at added p99 <= 100 ms; idle stream <= 40 KB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from backend.settings import Settings
from bench.service import free_port, migrate, redis_url
from bench.streaming_report import CostSplit, Figures, Level, Throughput, compare

ROOT = Path(__file__).resolve().parents[1]
MODEL_ID = "bench-model"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    ttft_concurrency: tuple[int, ...]
    seconds: float
    throughput_streams: int
    idle_streams: int
    tokens: int
    tokens_per_second: float
    phases: str = "abfc"
    cost_streams: int = 100
    short_tokens: int = 2
    # The fewest answers a first-token level measures: at one stream the level's seconds
    # hold only 8 or 9 answers, a p50 that moved ~1 ms between runs on its own.
    ttft_turns: int = 25


FULL = Plan((1, 20, 40, 60, 80, 100), 10.0, 500, 5000, 60, 50.0)
QUICK = Plan((1, 20), 4.0, 100, 300, 30, 50.0, cost_streams=50, ttft_turns=5)


# --- processes ---------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes and all their descendants."""
    total = 0
    for root in pids:
        for pid in descendants(root):
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    total_kb = 0
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


@dataclass
class Stack:
    env: dict[str, str]
    web_port: int
    fake_port: int
    redis_pid: int
    tree: Path = ROOT
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, args: list[str], cwd: Path | None = None) -> subprocess.Popen:
        """A process of the code under test (`tree`), or of this checkout with `cwd`."""
        process = subprocess.Popen(
            args,
            cwd=cwd or self.tree,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds so far of the web process(es) and of all chat workers."""
        workers = [p.pid for n, p in self.processes.items() if n.startswith("worker")]
        return {"web": cpu_seconds([self.pid("web")]), "worker": cpu_seconds(workers)}


def wait_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def python(profile: Path | None, name: str) -> list[str]:
    """`python -m`, under cProfile (writing `<profile>/<name>.prof` at exit) when asked."""
    if profile is None:
        return [sys.executable, "-m"]
    return [sys.executable, "-m", "cProfile", "-o", str(profile / f"{name}.prof"), "-m"]


@contextlib.contextmanager
def stack(
    plan: Plan,
    database_url: str | None,
    web_workers: int,
    chat_workers: int = 1,
    profile: Path | None = None,
    tree: Path = ROOT,
) -> Iterator[Stack]:
    """The fake provider (always this checkout's), and Sluice's web and chat worker
    processes run from `tree`'s code."""
    with tempfile.TemporaryDirectory() as data_dir, redis_url() as redis_address:
        web_port, fake_port = free_port(), free_port()
        models = [
            {
                "id": MODEL_ID,
                "provider": "openai",
                "upstream": "bench-upstream",
                "context_window": 8192,
                "max_output": plan.tokens * 2,
                "prompt_price": 0,
                "completion_price": 0,
                "capabilities": ["text"],
            }
        ]
        env = {
            **os.environ,
            "DATA_DIR": data_dir,
            "DATABASE_URL": database_url or "",
            "REDIS_URL": redis_address,
            "REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
            "SECRET_KEY": "bench-secret-key-long-enough-for-hs256",
            "LOG_LEVEL": "WARNING",
            "MODELS": json.dumps(models),
            "DEFAULT_MODEL": MODEL_ID,
            "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
            "OPENAI_API_KEY": "bench",
            "NEW_USER_CREDITS": "0",
        }
        server = redis.Redis.from_url(redis_address).info("server")
        running = Stack(env, web_port, fake_port, int(server["process_id"]), tree)
        try:
            migrate(env, tree)
            running.start(
                "fake",
                [
                    sys.executable,
                    "-m",
                    "tests.support.fake_openai",
                    "--port",
                    str(fake_port),
                    "--tokens-per-second",
                    str(plan.tokens_per_second),
                    "--tokens",
                    str(plan.tokens),
                ],
                cwd=ROOT,
            )
            web = [*python(profile, "web"), "hypercorn", "backend.asgi:app"]
            # Profiled, Hypercorn serves in its own process (--workers 0), not a child.
            workers = "0" if profile else str(web_workers)
            web += ["--bind", f"127.0.0.1:{web_port}", "--workers", workers]
            running.start("web", web)
            for index in range(chat_workers):
                running.start(
                    f"worker-{index}", [*python(profile, f"worker-{index}"), "workers", "chat"]
                )
            wait_http(f"http://127.0.0.1:{fake_port}/v1/models")
            wait_http(f"http://127.0.0.1:{web_port}/readyz")
            yield running
        finally:
            for name in list(running.processes):
                running.stop(name)
            cleanup = redis.Redis.from_url(redis_address)
            for key in cleanup.scan_iter(f"{env['REDIS_PREFIX']}:*", count=1000):
                cleanup.delete(key)


# --- a lean HTTP/1.1 streaming client ------------------------------------------------------


class HttpStream:
    """One request over a raw socket; yields the decoded body as it arrives (chunked or not)."""

    def __init__(self, port: int, method: str, path: str, body: dict | None, headers: dict) -> None:
        self.port = port
        payload = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
        self.status = 0
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> asyncio.StreamReader:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.chunked = b"transfer-encoding: chunked" in head.lower()
        return reader

    async def body(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        if not self.chunked:
            while data := await reader.read(65536):
                yield data
            return
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]

    async def lines(self, reader: asyncio.StreamReader) -> AsyncIterator[str]:
        buffer = b""
        async for data in self.body(reader):
            buffer += data
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                yield line.decode().rstrip("\r")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class StreamResult:
    first_token_ms: float = float("nan")
    tokens: int = 0
    max_gap_ms: float = 0.0
    ok: bool = False
    events: int = 0  # `token` events received (bench_coalescing: how many the window made)


async def sluice_stream(port: int, token: str, session_id: str) -> StreamResult:
    """POST a task with `stream: true`; time to the first `token` event, tokens at `done`."""
    result = StreamResult()
    request = HttpStream(
        port,
        "POST",
        "/api/v1/tasks",
        {"session_id": session_id, "question": "Tell me a story.", "stream": True},
        {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
    )
    started = time.perf_counter()
    try:
        reader = await request.open()
        if request.status != 200:
            return result
        event, last = "", None
        async for line in request.lines(reader):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "token":
                now = time.perf_counter()
                if last is None:
                    result.first_token_ms = (now - started) * 1000
                else:
                    result.max_gap_ms = max(result.max_gap_ms, (now - last) * 1000)
                last = now
                result.events += 1
            elif line.startswith("data:") and event == "done":
                result.tokens = json.loads(line[5:])["completion_tokens"]
                result.ok = True
                return result
            elif line.startswith("data:") and event in ("error", "cancelled"):
                return result
    finally:
        request.close()
    return result


async def provider_stream(port: int) -> StreamResult:
    """The same completion straight from the fake provider: its own first-token time."""
    result = StreamResult()
    request = HttpStream(
        port,
        "POST",
        "/v1/chat/completions",
        {
            "model": "bench-upstream",
            "messages": [{"role": "user", "content": "Tell me a story."}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        {"Authorization": "Bearer bench"},
    )
    started = time.perf_counter()
    last = None
    try:
        reader = await request.open()
        async for line in request.lines(reader):
            if not line.startswith("data:") or line == "data: [DONE]":
                if line == "data: [DONE]":
                    result.ok = True
                    return result
                continue
            chunk = json.loads(line[5:])
            if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                now = time.perf_counter()
                if last is None:
                    result.first_token_ms = (now - started) * 1000
                else:
                    result.max_gap_ms = max(result.max_gap_ms, (now - last) * 1000)
                last = now
                result.tokens += 1
    finally:
        request.close()
    return result


# --- setup through the services ------------------------------------------------------------


BENCH_SETTINGS = {"DATA_DIR", "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "SECRET_KEY"}


@dataclass(frozen=True)
class Fixture:
    token: str
    user_id: int
    sessions: list[str]
    # Sessions of an assistant whose max_tokens caps answers at `Plan.short_tokens`.
    short_sessions: list[str]


@contextlib.asynccontextmanager
async def database(env: dict[str, str]) -> AsyncIterator[Settings]:
    """The service's database, opened from this process (the bench's own setup and rows)."""
    from backend.database import close_database, open_database

    settings = Settings(
        **{k.lower(): v for k, v in env.items() if k in BENCH_SETTINGS}, _env_file=None
    )
    await open_database(settings)
    try:
        yield settings
    finally:
        await close_database()


async def prepare(env: dict[str, str], sessions: int, short: int, short_tokens: int) -> Fixture:
    """A user, `sessions` chat sessions and `short` of an assistant answering in
    `short_tokens` tokens, created directly in the service's database."""
    from backend.models import Assistant, ChatSession
    from backend.services.tokens import issue_access_token
    from backend.services.users import create_user

    async with database(env) as settings:
        user = await create_user(settings, f"bench{uuid.uuid4().hex[:8]}", "bench-password-1")

        async def sessions_of(llm: dict, count: int) -> list[str]:
            assistant = await Assistant.create(owner_id=user.id, name="bench", llm=llm)
            ids = []
            for index in range(count):
                session = await ChatSession.create(
                    assistant_id=assistant.id, user_id=user.id, name=f"s{index}"
                )
                ids.append(session.id)
            return ids

        ids = await sessions_of({"model_name": MODEL_ID}, sessions)
        brief = await sessions_of({"model_name": MODEL_ID, "max_tokens": short_tokens}, short)
        return Fixture(issue_access_token(user, settings), user.id, ids, brief)


async def queued_tasks(env: dict[str, str], fixture: Fixture, count: int) -> list[str]:
    """Tasks that stay queued (no job is enqueued), so their streams stay open and idle."""
    from backend.models import Task
    from backend.models.ids import new_id

    async with database(env):
        rows = [
            Task(
                id=new_id(), user_id=fixture.user_id, session_id=fixture.sessions[0], model=MODEL_ID
            )
            for _ in range(count)
        ]
        await Task.bulk_create(rows, batch_size=500)
    return [row.id for row in rows]


# --- measurements --------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(v for v in values if v == v)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def closed_loop(
    streams: int, plan: Plan, one: Callable[[int], Awaitable[StreamResult]], turns: int = 0
) -> tuple[list[StreamResult], float]:
    """`streams` clients, each starting its next stream as soon as the last one ended,
    for `plan.seconds` and until `turns` streams ended: a steady `streams` streams in
    flight.

    Client i first waits i/streams of an answer's duration. Started together, clients
    whose answers all take as long stay in lock-step: every answer would begin in one
    burst per answer duration, a thundering herd no population of independent users
    makes. Staggered, answers begin at an even rate, as they do in a live service.
    """
    results: list[StreamResult] = []
    answer_seconds = plan.tokens / plan.tokens_per_second
    started = time.perf_counter()
    deadline = started + plan.seconds

    async def client(index: int) -> None:
        await asyncio.sleep(answer_seconds * index / streams)
        while time.perf_counter() < deadline or len(results) < turns:
            results.append(await one(index))

    await asyncio.gather(*(client(i) for i in range(streams)))
    return results, time.perf_counter() - started


def cpu_split(running: Stack) -> dict[str, float]:
    """CPU seconds so far of the service, Redis, the fake provider and this load generator."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    service = [running.pid(name) for name in running.processes if name != "fake"]
    return {
        "sluice": cpu_seconds(service),
        "redis": cpu_seconds([running.redis_pid]),
        "fake provider": cpu_seconds([running.pid("fake")]),
        "load generator": usage.ru_utime + usage.ru_stime,
    }


@dataclass(frozen=True)
class Demand:
    """What one first-token level asks of the machine, from CPU measured in the same run.

    The raw run offers the load (answers/s the clients start when the provider alone
    answers); Sluice's CPU per answer is what it spent during its own run at that level.
    Together they say whether the level fits this machine at all, before latency.
    """

    offered_answers_per_s: float
    harness_cores: float
    sluice_ms_per_answer: float
    redis_ms_per_answer: float

    @property
    def sluice_cores(self) -> float:
        return self.offered_answers_per_s * self.sluice_ms_per_answer / 1000

    @property
    def redis_cores(self) -> float:
        return self.offered_answers_per_s * self.redis_ms_per_answer / 1000

    @property
    def total_cores(self) -> float:
        return self.harness_cores + self.sluice_cores + self.redis_cores


def harness_cores(before: dict[str, float], after: dict[str, float], seconds: float) -> float:
    """Cores the fake provider and the load generator kept busy."""
    return sum(after[n] - before[n] for n in ("fake provider", "load generator")) / seconds


async def first_token(
    running: Stack, token: str, sessions: list[str], plan: Plan, figures: Figures
) -> None:
    print(
        f"\n(a) time to first token (ms), {plan.tokens} tokens per answer at "
        f"{plan.tokens_per_second:g} tokens/s, closed loop for {plan.seconds:g} s per level "
        f"and at least {plan.ttft_turns} answers"
    )
    print(
        f"{'streams':>8} {'provider p50':>13} {'p99':>8} {'sluice p50':>11} {'p99':>8} "
        f"{'added p50':>10} {'p99':>8} {'turns':>6} {'failed':>7}"
    )
    for concurrency in plan.ttft_concurrency:
        raw_before = cpu_split(running)
        raw, raw_seconds = await closed_loop(
            concurrency, plan, lambda i: provider_stream(running.fake_port), plan.ttft_turns
        )
        raw_after = before = cpu_split(running)
        roles_before = running.cpu_by_role()
        ours, seconds = await closed_loop(
            concurrency,
            plan,
            lambda i: sluice_stream(running.web_port, token, sessions[i]),
            plan.ttft_turns,
        )
        after = cpu_split(running)
        roles = {k: (v - roles_before[k]) / seconds for k, v in running.cpu_by_role().items()}
        r50, r99 = (
            pct([r.first_token_ms for r in raw], 0.5),
            pct([r.first_token_ms for r in raw], 0.99),
        )
        p50, p99 = (
            pct([r.first_token_ms for r in ours], 0.5),
            pct([r.first_token_ms for r in ours], 0.99),
        )
        failed = sum(not r.ok for r in ours)
        figures.levels[concurrency] = Level(
            concurrency, r50, r99, p50, p99, len(ours), failed, roles["web"], roles["worker"]
        )
        print(
            f"{concurrency:>8} {r50:>13.2f} {r99:>8.2f} {p50:>11.2f} {p99:>8.2f} "
            f"{p50 - r50:>10.2f} {p99 - r99:>8.2f} {len(ours):>6} {failed:>7}"
        )
        cores = ", ".join(f"{name} {(after[name] - before[name]) / seconds:.2f}" for name in after)
        print(
            f"{'':>8} cores busy during the Sluice run: {cores} (web {roles['web']:.2f}, "
            f"worker {roles['worker']:.2f}; {concurrency / (sum(roles.values()) or 1e-9):.0f} "
            "streams per Sluice core)"
        )
        answers = max(len(ours), 1)
        demand = Demand(
            offered_answers_per_s=len(raw) / raw_seconds,
            harness_cores=harness_cores(raw_before, raw_after, raw_seconds),
            sluice_ms_per_answer=(after["sluice"] - before["sluice"]) * 1000 / answers,
            redis_ms_per_answer=(after["redis"] - before["redis"]) * 1000 / answers,
        )
        print(
            f"{'':>8} demand at this level: {demand.offered_answers_per_s:.0f} answers/s offered; "
            f"harness {demand.harness_cores:.2f} cores (its raw run), Sluice "
            f"{demand.sluice_cores:.2f} ({demand.sluice_ms_per_answer:.1f} ms CPU per answer), "
            f"Redis {demand.redis_cores:.2f}: {demand.total_cores:.2f} of this machine's "
            f"{os.cpu_count()} cores"
        )


async def throughput(
    running: Stack, token: str, sessions: list[str], plan: Plan, figures: Figures
) -> None:
    streams = plan.throughput_streams
    print(
        f"\n(b) throughput at {streams} concurrent streams, closed loop for {plan.seconds:g} s "
        f"({plan.tokens} tokens per answer at {plan.tokens_per_second:g} tokens/s)"
    )
    fake = [running.pid("fake")]
    before = cpu_seconds(fake)
    raw, raw_seconds = await closed_loop(
        streams, plan, lambda i: provider_stream(running.fake_port)
    )
    raw_cpu = cpu_seconds(fake) - before
    raw_tokens = sum(r.tokens for r in raw)

    ours_names = [name for name in running.processes if name != "fake"]
    before_each = {name: cpu_seconds([running.pid(name)]) for name in ours_names}
    ours, seconds = await closed_loop(
        streams, plan, lambda i: sluice_stream(running.web_port, token, sessions[i])
    )
    spent = {name: cpu_seconds([running.pid(name)]) - before_each[name] for name in ours_names}
    cpu = sum(spent.values())
    tokens = sum(r.tokens for r in ours)
    failed = sum(not r.ok for r in ours)

    def line(name: str, n: int, secs: float, cpu_s: float, results: list[StreamResult]) -> str:
        per_k = cpu_s / (n / 1000) if n else float("nan")
        gaps = [r.max_gap_ms for r in results]
        return (
            f"{name:<22} {n / secs:>8.0f} tokens/s  {per_k:>7.3f} CPU s per 1k tokens  "
            f"longest gap p99 {pct(gaps, 0.99):>7.1f} ms"
        )

    print(line("provider (raw)", raw_tokens, raw_seconds, raw_cpu, raw))
    print(line("sluice (web + worker)", tokens, seconds, cpu, ours))
    shares = ", ".join(f"{name} {value:.2f} s" for name, value in spent.items())
    print(
        f"{len(ours)} answers ({len(ours) / seconds:.0f}/s); CPU {shares}; "
        f"{cpu * 1000 / max(len(ours), 1):.1f} ms CPU per answer"
    )
    rate_ratio = (tokens / seconds) / (raw_tokens / raw_seconds)
    cpu_ratio = (cpu / max(tokens, 1)) / max(raw_cpu / max(raw_tokens, 1), 1e-9)
    figures.throughput = Throughput(
        streams=streams,
        raw_tokens_per_s=raw_tokens / raw_seconds,
        tokens_per_s=tokens / seconds,
        cpu_ms_per_answer=cpu * 1000 / max(len(ours), 1),
        cpu_s_per_1k_tokens=cpu / max(tokens / 1000, 1e-9),
        raw_cpu_s_per_1k_tokens=raw_cpu / max(raw_tokens / 1000, 1e-9),
        failed=failed,
    )
    print(
        f"ratios: sluice delivers {rate_ratio:.2f}x the raw provider's tokens/s and spends "
        f"{cpu_ratio:.1f}x its CPU per token; failed streams {failed}; "
        f"expected gap between tokens {1000 / plan.tokens_per_second:.0f} ms"
    )


async def idle_streams(running: Stack, fixture: Fixture, plan: Plan, figures: Figures) -> None:
    """Hold many open SSE streams of queued tasks: nothing is sent on them but heartbeats."""
    count = plan.idle_streams
    print(f"\n(c) web RSS with {count} idle open SSE streams")
    task_ids = await queued_tasks(running.env, fixture, count)
    web = running.pid("web")
    before = rss_mb(web)
    opened: list[HttpStream] = []
    gate = asyncio.Semaphore(200)

    async def open_one(task_id: str) -> None:
        request = HttpStream(
            running.web_port,
            "GET",
            f"/api/v1/tasks/{task_id}/stream",
            None,
            {"Authorization": f"Bearer {fixture.token}", "Accept": "text/event-stream"},
        )
        opened.append(request)
        async with gate:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await request.open()

    started = time.perf_counter()
    await asyncio.gather(*(open_one(task_id) for task_id in task_ids))
    elapsed = time.perf_counter() - started
    live = sum(r.status == 200 for r in opened)
    await asyncio.sleep(2)
    after = rss_mb(web)
    figures.idle_kb = (after - before) * 1024 / max(live, 1)
    print(
        f"opened {live}/{count} streams in {elapsed:.1f} s; web RSS {before:.1f} MB -> "
        f"{after:.1f} MB ({(after - before) * 1024 / max(live, 1):.1f} KB per open stream)"
    )
    for request in opened:
        request.close()


def raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def cost_split(running: Stack, fixture: Fixture, plan: Plan, figures: Figures) -> None:
    """CPU per answer of web and workers for short and full-length answers, same load."""
    streams = plan.cost_streams
    print(
        f"\n(f) CPU per answer by process, {streams} streams, answers of {plan.short_tokens} "
        f"and {plan.tokens} tokens, closed loop for {plan.seconds:g} s each"
    )
    measured: dict[str, tuple[float, dict[str, float]]] = {}
    for name, sessions in (("short", fixture.short_sessions), ("long", fixture.sessions)):
        before = running.cpu_by_role()
        results, seconds = await closed_loop(
            streams,
            plan,
            lambda i, sessions=sessions: sluice_stream(
                running.web_port, fixture.token, sessions[i]
            ),
        )
        done = [r for r in results if r.ok] or [StreamResult()]
        spent = {k: (v - before[k]) * 1000 / len(done) for k, v in running.cpu_by_role().items()}
        tokens = sum(r.tokens for r in done) / len(done)
        measured[name] = (tokens, spent)
        print(
            f"{name:>6}: {len(done)} answers of {tokens:.1f} tokens ({len(done) / seconds:.0f}/s, "
            f"failed {len(results) - sum(r.ok for r in results)}); CPU per answer: web "
            f"{spent['web']:.2f} ms, worker {spent['worker']:.2f} ms"
        )
    figures.costs = CostSplit(
        streams,
        measured["short"][0],
        measured["long"][0],
        measured["short"][1],
        measured["long"][1],
    )


async def run(running: Stack, plan: Plan, figures: Figures) -> None:
    most = max(*plan.ttft_concurrency, plan.throughput_streams, plan.cost_streams)
    fixture = await prepare(running.env, most, plan.cost_streams, plan.short_tokens)
    token, sessions = fixture.token, fixture.sessions
    warm = await asyncio.gather(*(sluice_stream(running.web_port, token, s) for s in sessions[:5]))
    if not all(r.ok for r in warm):
        raise SystemExit("warm-up streams failed: is the stack healthy?")
    if "a" in plan.phases:
        await first_token(running, token, sessions, plan, figures)
    if "b" in plan.phases:
        await throughput(running, token, sessions, plan, figures)
    if "f" in plan.phases:
        await cost_split(running, fixture, plan, figures)
    if "c" in plan.phases:
        await idle_streams(running, fixture, plan, figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    parser.add_argument(
        "--base",
        type=Path,
        help="another checkout (e.g. a git worktree of the old commit): measure it first, "
        "in the same run, and compare",
    )
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument("--web-workers", type=int, default=1, help="Hypercorn --workers")
    parser.add_argument("--chat-workers", type=int, default=1, help="arq chat worker processes")
    parser.add_argument("--tokens", type=int, help="tokens per answer (plan default otherwise)")
    parser.add_argument("--streams", type=int, help="concurrent streams for (b)")
    parser.add_argument("--idle-streams", type=int, help="open idle SSE streams for (c)")
    parser.add_argument(
        "--ttft-streams",
        type=lambda value: tuple(int(n) for n in value.split(",")),
        help="concurrency levels for (a), e.g. 1,100,200 (plan default otherwise)",
    )
    parser.add_argument(
        "--rate", type=float, help="the provider's tokens/s per stream (plan default: 50)"
    )
    parser.add_argument(
        "--phases", default="abfc", help="which measurements to run, e.g. `ab` (default: abfc)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run web and workers under cProfile, writing DIR/<process>.prof (slows them)",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    plan = dataclasses.replace(
        plan,
        tokens=args.tokens or plan.tokens,
        tokens_per_second=args.rate or plan.tokens_per_second,
        ttft_concurrency=args.ttft_streams or plan.ttft_concurrency,
        throughput_streams=args.streams or plan.throughput_streams,
        idle_streams=args.idle_streams or plan.idle_streams,
        phases=args.phases,
    )
    raise_open_files()
    print(f"plan: {plan}")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    trees = [("base", args.base.resolve())] if args.base else []
    trees.append(("this code" if args.base else "sluice", ROOT))
    measured = []
    for label, tree in trees:
        print(f"\n===== {label}: {tree} =====")
        figures = Figures(label)
        profile = args.profile / label.replace(" ", "-") if args.profile else None
        if profile:
            profile.mkdir(parents=True, exist_ok=True)
        with stack(
            plan, args.database_url, args.web_workers, args.chat_workers, profile, tree
        ) as running:
            asyncio.run(run(running, plan, figures))
        measured.append(figures)
    compare(measured)


if __name__ == "__main__":
    main()
