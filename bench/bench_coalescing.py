"""Load-adaptive coalescing: CPU and token events per answer, old code next to new.

For each variant (the old tree given by --base, then this tree with each
TASK_COALESCE_MAX_MS of --max-ms) a private stack (bench_streaming's: web, one chat
worker, the fake provider at 50 tokens/s, its own Redis, SQLite) runs closed loops of
fresh-session 60-token answers: at 1 and 20 streams it prints the first token's p50/p99
(the window never holds the first token back; this shows nothing else did), at the
--streams levels (default 100 and 500) the CPU per answer of web and worker, the token
events per answer and the longest gap between a stream's events (p50/p99). Variants are
measured in turn, --rounds times, so the VM's drift spreads over all of them; the last
table prints medians and each variant's ratio to the first.

    python -m bench.bench_coalescing --base /tmp/h3-old --max-ms 20,40 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.bench_streaming import (
    ROOT,
    Fixture,
    Plan,
    Stack,
    StreamResult,
    closed_loop,
    pct,
    prepare,
    raise_open_files,
    sluice_stream,
    stack,
)

PLAN = Plan((1, 20), 8.0, 500, 0, 60, 50.0, phases="", cost_streams=500)


@dataclass
class Figures:
    label: str
    rows: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.rows.setdefault(name, []).append(value)


async def measure(
    running: Stack, plan: Plan, levels: list[int], figures: Figures, fixture: Fixture | None = None
) -> None:
    if fixture is None:
        fixture = await prepare(running.env, sessions_needed(plan, levels), 0, 2)
    sessions = iter(fixture.sessions)

    async def loop(streams: int, seconds: float) -> tuple[list[StreamResult], float]:
        mine = [next(sessions) for _ in range(streams)]  # fresh sessions, no history
        timed = dataclasses.replace(plan, seconds=seconds)
        results, _ = await closed_loop(
            streams, timed, lambda i: sluice_stream(running.web_port, fixture.token, mine[i])
        )
        return [r for r in results if r.ok and r.tokens > 0], len(results)

    await loop(5, 2.0)  # warm both processes
    for streams in plan.ttft_concurrency:
        done, _ = await loop(streams, plan.seconds)
        firsts = [r.first_token_ms for r in done]
        figures.add(f"first token p50, {streams} streams (ms)", pct(firsts, 0.5))
        figures.add(f"first token p99, {streams} streams (ms)", pct(firsts, 0.99))
    for streams in levels:
        before = running.cpu_by_role()
        done, _ = await loop(streams, plan.seconds)
        after = running.cpu_by_role()
        answers = max(len(done), 1)
        web = (after["web"] - before["web"]) * 1000 / answers
        worker = (after["worker"] - before["worker"]) * 1000 / answers
        figures.add(f"CPU per answer web, {streams} streams (ms)", web)
        figures.add(f"CPU per answer worker, {streams} streams (ms)", worker)
        figures.add(f"CPU per answer total, {streams} streams (ms)", web + worker)
        figures.add(f"answers/s, {streams} streams", len(done) / plan.seconds)
        gaps = [r.max_gap_ms for r in done]
        figures.add(f"longest gap p50, {streams} streams (ms)", pct(gaps, 0.5))
        figures.add(f"longest gap p99, {streams} streams (ms)", pct(gaps, 0.99))
        events = statistics.mean(r.events for r in done)
        print(
            f"  {figures.label}: {streams} streams: {len(done)} answers, CPU web {web:.2f} + "
            f"worker {worker:.2f} ms, {events:.1f} events per answer",
            flush=True,
        )
        figures.add(f"token events per answer, {streams} streams", events)


def sessions_needed(plan: Plan, levels: list[int]) -> int:
    return 5 + sum(plan.ttft_concurrency) + sum(levels)


async def measure_together(
    stacks: list[Stack], plan: Plan, levels: list[int], figures: list[Figures]
) -> None:
    """Every variant's levels at the same time, so each meets the same neighbours."""
    fixtures = [await prepare(s.env, sessions_needed(plan, levels), 0, 2) for s in stacks]
    await asyncio.gather(
        *(
            measure(s, plan, levels, f, fixture)
            for s, f, fixture in zip(stacks, figures, fixtures, strict=True)
        )
    )


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def report(measured: list[Figures]) -> None:
    first = measured[0]
    print(f"\n{'measure (median of rounds)':<44}" + "".join(f"{f.label:>16}" for f in measured))
    for name in first.rows:
        medians = [statistics.median(f.rows[name]) for f in measured]
        cells = [f"{medians[0]:>16.2f}"] + [
            f"{m:>8.2f} ({m / medians[0] if medians[0] else float('nan'):.2f}x)"[:16].rjust(16)
            for m in medians[1:]
        ]
        print(f"{name:<44}" + "".join(cells))
    print("\nevery round (the spread behind each median):")
    for figures in measured:
        rounds = "; ".join(
            f"{name}: {', '.join(f'{v:.1f}' for v in values)}"
            for name, values in figures.rows.items()
        )
        print(f"  {figures.label}: {rounds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, help="the old tree (git archive of the old commit)")
    parser.add_argument(
        "--tree", type=Path, default=ROOT, help="the new tree (default: this checkout)"
    )
    parser.add_argument(
        "--max-ms", default="40", help="TASK_COALESCE_MAX_MS values for this tree, e.g. 20,40"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="more: LABEL:TREE[:KEY=VALUE,...] (environment of that variant's processes)",
    )
    parser.add_argument("--streams", default="100,500", help="CPU levels, e.g. 100,500")
    parser.add_argument("--seconds", type=float, default=PLAN.seconds, help="per level")
    parser.add_argument("--rounds", type=int, default=1, help="times each variant runs")
    parser.add_argument(
        "--together",
        action="store_true",
        help="run all variants' stacks at the same time (on a shared, noisy VM: each meets "
        "the same neighbours; they share the cores equally)",
    )
    args = parser.parse_args()
    levels = [int(n) for n in filter(None, args.streams.split(","))]
    plan = dataclasses.replace(PLAN, seconds=args.seconds)
    variants: list[tuple[str, Path, dict[str, str]]] = []
    if args.base:
        variants.append(("old", args.base.resolve(), {}))
    for value in filter(None, args.max_ms.split(",")):
        variants.append((f"max {value} ms", args.tree.resolve(), {"TASK_COALESCE_MAX_MS": value}))
    for spec in args.variant:
        label, tree, *env = spec.split(":")
        pairs = dict(pair.split("=", 1) for pair in env[0].split(",")) if env else {}
        variants.append((label, Path(tree).resolve(), pairs))
    raise_open_files()
    measured = {label: Figures(label) for label, _, _ in variants}
    for round_ in range(args.rounds):
        if args.together:
            print(f"round {round_ + 1}: all variants at once", flush=True)
            with contextlib.ExitStack() as stacks:
                running = []
                for _, tree, env in variants:
                    with environment(env):
                        running.append(stacks.enter_context(stack(plan, None, 1, 1, None, tree)))
                asyncio.run(measure_together(running, plan, levels, list(measured.values())))
            continue
        for label, tree, env in variants:
            print(f"round {round_ + 1}: {label} ({tree})", flush=True)
            with environment(env), stack(plan, None, 1, 1, None, tree) as running:
                asyncio.run(measure(running, plan, levels, measured[label]))
    report(list(measured.values()))


if __name__ == "__main__":
    main()
