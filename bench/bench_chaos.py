"""Chaos: streamed answers while Redis and PostgreSQL restart at random (issue 18).

A web process and two chat workers on a private PostgreSQL and a private Redis
(append-only, so a restart keeps the streams), answering from the fake OpenAI-compatible
upstream (`--tokens` tokens at 40 tokens/s, about a second each). `--concurrency` clients
ask `--answers` questions in all, as a careful client does: a submit refused (503) or cut
is sent again, a stream cut mid-answer is resumed with `Last-Event-ID`, each for up to
`--answer-deadline` seconds. Meanwhile a fault every 1-4 s: Redis killed and started again
on its port, or PostgreSQL stopped (fast shutdown) and started, each down for 0.5-3 s.

Prints, for the answers: how many ended `done` with the text the database stored, and
- **lost**: the client saw an `error` or no terminal event, or the task is not
  `succeeded` in SQL;
- **duplicated**: an event id delivered twice, a second terminal event, or a task no
  client heard of that ran (a submit sent again that had in fact landed);
- **stuck**: a task still `queued`/`running` in SQL once the faults stopped and
  `--settle` seconds passed;
- **mismatched**: a `done` answer whose streamed text differs from the stored message;
and for each fault, the recovery time: from the dependency being back to `/readyz`
answering 200 and to the next answer finishing.

Run: `.venv/bin/python -m bench.bench_chaos --answers 40 --seed 1` (needs PostgreSQL's
binaries and redis-server, as `make test` installs them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from backend.settings import Settings
from bench.chaos_client import Answer, ask, open_session
from bench.chaos_faults import Chaos
from tests.support.fake_openai import fake_openai_server
from tests.support.live_server import start_chat_worker, start_hypercorn
from tests.support.own_database import migrate
from tests.support.private_postgres import PrivatePostgres, pg_bindir
from tests.support.private_redis import PrivateRedis
from tests.support.task_models import with_models


def settings_for(postgres: PrivatePostgres, redis: PrivateRedis, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=postgres.admin_url,
        redis_url=redis.url,
        redis_prefix="chaos",
        secret_key="chaos-secret-key-that-is-long-enough-for-hs256",
        new_user_credits=1_000_000,
        log_json=False,
        log_level="WARNING",
        _env_file=None,
    )


async def sql_state(postgres: PrivatePostgres) -> tuple[dict[str, str], dict[str, str]]:
    """Every task's state, and each finished task's stored answer text."""
    conn = await asyncpg.connect(postgres.admin_url.replace("postgres://", "postgresql://"))
    try:
        rows = await conn.fetch(
            "SELECT t.id, t.state, m.content FROM tasks t "
            "LEFT JOIN messages m ON m.id = t.message_id"
        )
    finally:
        await conn.close()
    states = {row["id"]: row["state"] for row in rows}
    texts = {row["id"]: stored_text(row["content"]) for row in rows if row["content"]}
    return states, texts


def stored_text(content: object) -> str:
    parts = json.loads(content) if isinstance(content, str) else content
    if isinstance(parts, str):
        return parts
    return "".join(part.get("text", "") for part in parts or [] if isinstance(part, dict))


def seconds(values: list[float]) -> str:
    if not values:
        return "-"
    return f"p50 {statistics.median(values):.2f} s, max {max(values):.2f} s"


async def run(args: argparse.Namespace) -> None:
    bindir = pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL's binaries are not installed")
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="sluice-chaos-"))
    postgres, redis = PrivatePostgres(bindir), PrivateRedis(workdir)
    processes = []
    try:
        postgres.initdb()
        postgres.start()
        await redis.start()
        async with fake_openai_server(tokens=args.tokens, tokens_per_second=40) as upstream:
            settings = with_models(
                settings_for(postgres, redis, workdir / "data"),
                upstream.base_url,
                upstream.base_url,
            )
            await asyncio.to_thread(migrate, settings)
            web = await start_hypercorn(settings, workdir)
            processes.append(web.server)
            for _ in range(2):
                processes.append(await start_chat_worker(settings, workdir))
            chaos = Chaos(postgres, redis, web.base_url)
            sessions = [await open_session(web.base_url) for _ in range(args.concurrency)]
            queue: asyncio.Queue[int] = asyncio.Queue()
            for number in range(args.answers):
                queue.put_nowait(number)
            answers: list[Answer] = []

            async def client(session: tuple[dict[str, str], str]) -> None:
                while not queue.empty():
                    queue.get_nowait()
                    answer = await ask(web.base_url, *session, args.answer_deadline)
                    answers.append(answer)
                    chaos.finished.append(time.monotonic())

            stop = asyncio.Event()
            injector = asyncio.create_task(chaos.inject(rng, stop))
            started = time.monotonic()
            await asyncio.gather(*(client(session) for session in sessions))
            elapsed = time.monotonic() - started
            stop.set()
            await injector
            await asyncio.sleep(args.settle)
            states, texts = await sql_state(postgres)
            alive = sum(process.process.poll() is None for process in processes)
    finally:
        for process in processes:
            process.stop()
        redis.kill()
        postgres.remove()
    report(args, chaos, answers, states, texts, elapsed, alive, len(processes), workdir)


def report(
    args: argparse.Namespace,
    chaos: Chaos,
    answers: list[Answer],
    states: dict[str, str],
    texts: dict[str, str],
    elapsed: float,
    alive: int,
    started: int,
    workdir: Path,
) -> None:
    done = [a for a in answers if a.terminal == "done"]
    lost = [a for a in answers if a.terminal != "done" or states.get(a.task_id) != "succeeded"]
    duplicated = sum(a.duplicate_ids + max(0, a.terminals - 1) for a in answers)
    # Tasks no client heard of: a refused submit (503) records its task as failed
    # (queue_unavailable) and the client sends it again; one that ran is a duplicate.
    heard = {answer.task_id for answer in answers}
    unknown = [state for task, state in states.items() if task not in heard]
    duplicated += sum(state != "failed" for state in unknown)
    stuck = sum(state in ("queued", "running") for state in states.values())
    mismatched = sum(a.text != texts.get(a.task_id) for a in done)
    for fault in chaos.faults:
        after = [t - fault.back_at for t in chaos.finished if t >= fault.back_at]
        fault.answer_after = min(after) if after else None
    kinds = {
        kind: sum(f.kind == kind for f in chaos.faults)
        for kind in {"redis restart", "postgresql restart"}
    }
    print(
        f"{len(answers)} answers in {elapsed:.1f} s at concurrency {args.concurrency} under "
        f"{len(chaos.faults)} faults ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})"
    )
    print("| measure | count |\n| --- | --- |")
    print(f"| done, text as stored | {len(done) - mismatched} |")
    for name, value in (
        ("lost", len(lost)),
        ("duplicated", duplicated),
        ("stuck", stuck),
        ("mismatched", mismatched),
        ("submits sent again", sum(a.resubmits for a in answers)),
        ("refused submits left as failed tasks", sum(state == "failed" for state in unknown)),
        ("streams resumed", sum(a.resumes for a in answers)),
    ):
        print(f"| {name} | {value} |")
    print(f"| processes alive at the end | {alive} of {started} |")
    for kind in sorted(kinds):
        faults = [f for f in chaos.faults if f.kind == kind]
        ready = [f.ready_after for f in faults if f.ready_after is not None]
        answered = [f.answer_after for f in faults if f.answer_after is not None]
        print(f"{kind}: /readyz 200 again {seconds(ready)}; next answer done {seconds(answered)}")
    for answer in lost[:10]:
        print(
            f"  lost: task {answer.task_id} client {answer.terminal!r} "
            f"sql {states.get(answer.task_id)!r} {answer.note}"
        )
    print(f"logs: {workdir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--answer-deadline", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
