"""Where an answer's CPU goes, by part, from `bench.bench_streaming --profile DIR` runs.

`--profile` runs the web process and the chat worker under cProfile and writes
`DIR/<label>/web.prof` and `worker-0.prof` (one label per stack, `base` and `this code`
with `--base`). This reads them and prints each part's CPU per answer, split web and
worker: a coroutine's cumulative time in cProfile is the time it ran (across its
resumptions, with what it awaited directly), so the parts below are what the answer's
path spent in them. cProfile slows Python code more than C, so read the parts as shares
of the unprofiled figures the bench prints, not as absolute costs.

Usage: python -m bench.streaming_profile DIR
"""

from __future__ import annotations

import pstats
import sys
from pathlib import Path

# (part, process, (file suffix, function)...): the functions whose cumulative time is
# the part's. Counted once per answer: the sync function named by ANSWERS.
PARTS: list[tuple[str, str, tuple[tuple[str, str], ...]]] = [
    (
        "auth (token, revocation, user row)",
        "web",
        (("services/authentication.py", "authenticate_credential"),),
    ),
    ("context (history, token counts)", "web", (("services/context.py", "build_context"),)),
    (
        # `atomically` before the creation was one trip (answer_writes), `retried` after.
        "creation SQL (hold, message, task)",
        "web",
        (("services/credits.py", "atomically"), ("services/credits.py", "retried")),
    ),
    ("enqueue", "web", (("backend/job_queue.py", "enqueue"),)),
    (
        "reader: lease and subscription",
        "web",
        (("streams/delivery.py", "open_new_task_reader"), ("streams/hub.py", "subscribe")),
    ),
    ("delivery: hub reads", "web", (("streams/hub.py", "run"),)),
    ("delivery: frames to the response", "web", (("streams/sse.py", "frames"),)),
    (
        "HTTP: Quart, Hypercorn, validation (all requests)",
        "web",
        (("quart/asgi.py", "handle_request"),),
    ),
    (
        "pick-up: poll and claim",
        "worker",
        # Ours wraps arq's (or, since issue 16, finds and claims due jobs in one script).
        (("workers/queue_worker.py", "_poll_iteration"),),
    ),
    ("pick-up: arq job bookkeeping", "worker", (("arq/worker.py", "run_job"),)),
    ("claim (SQL)", "worker", (("workers/jobs/chat.py", "claim"),)),
    ("provider: request and reading", "worker", (("providers/openai_compatible.py", "stream"),)),
    (
        "relay and appends",
        "worker",
        (("workers/jobs/relay.py", "relay"), ("streams/event_writer.py", "_flush")),
    ),
    ("completion (SQL, usage and done)", "worker", (("services/task_outcomes.py", "succeed"),)),
]
# Sync functions called once per answer in each process.
ANSWERS = {
    "web": ("services/tasks.py", "sampling"),
    "worker": ("workers/jobs/relay.py", "__init__"),
}
PROFILES = {"web": "web.prof", "worker": "worker-0.prof"}


def cumulative(stats: pstats.Stats, suffix: str, function: str) -> tuple[float, int]:
    """Cumulative seconds and primitive calls of the functions matching (suffix, name)."""
    seconds, calls = 0.0, 0
    for (filename, _, name), (primitive, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if name == function and filename.endswith(suffix):
            seconds += cum
            calls += primitive
    return seconds, calls


def report(directory: Path) -> None:
    stats = {process: pstats.Stats(str(directory / name)) for process, name in PROFILES.items()}
    answers = {process: cumulative(stats[process], *ANSWERS[process])[1] for process in stats}
    print(f"\n[{directory.name}] {answers['web']} answers (web), {answers['worker']} (worker)")
    print(f"{'part':<52} {'web ms':>8} {'worker ms':>10}  (per answer, under cProfile)")
    for part, process, functions in PARTS:
        seconds = sum(cumulative(stats[process], *f)[0] for f in functions)
        per_answer = seconds * 1000 / max(answers[process], 1)
        cells = (f"{per_answer:>8.2f} {'':>10}", f"{'':>8} {per_answer:>10.2f}")
        print(f"{part:<52} {cells[process == 'worker']}")


def main() -> None:
    root = Path(sys.argv[1])
    for directory in sorted(p for p in root.iterdir() if (p / "web.prof").exists()):
        report(directory)


if __name__ == "__main__":
    main()
