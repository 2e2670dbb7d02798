"""The garbage collector's share of a streamed answer, CPython's defaults against
GC_YOUNG_THRESHOLD (backend/garbage_collector.py), in one run.

Runs `bench.bench_streaming --phases b` (500 streams of 60-token answers) alternately
with GC_YOUNG_THRESHOLD=0 (CPython's thresholds, nothing frozen) and with the setting's
default, each process timing its collections on its thread's CPU clock (bench/gc_probe,
loaded through PYTHONPATH), and prints per variant: CPU per answer, the collector's CPU
per answer in the web process and the chat worker, and the longest collection of each
generation. The collector's own time is the figure to read: the CPU per answer of a
10 s run moves by ±10% on this VM whatever the setting.

    python -m bench.bench_garbage_collector [--rounds 2] [--streams 500]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backend.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "bench" / "gc_probe"
ANSWERS = re.compile(r"(\d+) answers .*CPU web ([\d.]+) s, worker-0 ([\d.]+) s; ([\d.]+) ms CPU")


def run(threshold: int, streams: int) -> dict:
    """One throughput phase; its answers, CPU and the collections inside the phase."""
    with tempfile.TemporaryDirectory() as probes:
        env = {
            **os.environ,
            "GC_YOUNG_THRESHOLD": str(threshold),
            "GC_PROBE_DIR": probes,
            "PYTHONPATH": os.pathsep.join([str(PROBE), os.environ.get("PYTHONPATH", "")]),
        }
        command = [sys.executable, "-m", "bench.bench_streaming", "--phases", "b"]
        command += ["--streams", str(streams)]
        bench = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        began = ended = None
        figures = None
        for line in bench.stdout or ():
            if line.startswith("(b)"):
                began = time.monotonic()
            elif (match := ANSWERS.search(line)) is not None:
                ended = time.monotonic()
                figures = match.groups()
        if bench.wait() != 0 or figures is None or began is None:
            raise SystemExit(f"bench_streaming failed (exit {bench.returncode})")
        answers = int(figures[0])
        result = {"answers": answers, "cpu_ms": float(figures[3])}
        for role in ("web", "worker"):
            collections = []
            for path in Path(probes).glob(f"{role}-*.json"):
                collections += [c for c in json.loads(path.read_text()) if began <= c[2] <= ended]
            result[f"{role}_gc_ms"] = sum(c[1] for c in collections) * 1000 / answers
            result[f"{role}_longest"] = [
                max((c[1] * 1000 for c in collections if c[0] == generation), default=0.0)
                for generation in (0, 1, 2)
            ]
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--streams", type=int, default=500)
    args = parser.parse_args()
    tuned = Settings(_env_file=None).gc_young_threshold
    variants = {"CPython defaults": 0, f"GC_YOUNG_THRESHOLD={tuned}": tuned}
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, threshold in variants.items():
            results[name].append(run(threshold, args.streams))
    print(f"\n{args.streams} streams, {args.rounds} alternating rounds, medians:")
    print(f"{'variant':28} {'CPU/answer':>10} {'GC web':>8} {'GC worker':>9}  longest gen0/1/2 web")
    medians = {}
    for name, runs in results.items():
        m = {
            k: statistics.median(r[k] for r in runs)
            for k in ("cpu_ms", "web_gc_ms", "worker_gc_ms")
        }
        longest = [max(r["web_longest"][g] for r in runs) for g in (0, 1, 2)]
        medians[name] = m
        print(
            f"{name:28} {m['cpu_ms']:8.1f}ms {m['web_gc_ms']:6.2f}ms {m['worker_gc_ms']:7.2f}ms  "
            + " / ".join(f"{x:.0f}" for x in longest)
            + " ms"
        )
    old, new = medians.values()
    gc_old = old["web_gc_ms"] + old["worker_gc_ms"]
    gc_new = new["web_gc_ms"] + new["worker_gc_ms"]
    print(
        f"collector CPU per answer (web + worker): {gc_old:.2f} -> {gc_new:.2f} ms "
        f"({gc_new / gc_old:.2f}x); CPU per answer {new['cpu_ms'] / old['cpu_ms']:.2f}x"
    )


if __name__ == "__main__":
    main()
