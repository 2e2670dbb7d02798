"""Process start-up benchmark: how long the web process and the two workers take to
import and to become ready, for this tree and optionally an older one (`--base DIR`).

Start-up matters for rolling and crash restarts in production and for the test suite,
whose live stacks start Hypercorn and arq workers again and again. Per process:

(import) `python -c "import backend.asgi"` (web), `import workers.chat`,
         `import workers.ingest`: wall and CPU seconds of a fresh interpreter, min over
         rounds (CPU is what a busy machine distorts least);
(ready)  `python -m hypercorn backend.asgi:app` until GET /healthz answers 200 (web),
         `python -m workers chat|ingest` until its arq health-check key is in Redis.

Each process gets a throwaway data directory (SQLite database, embedded search store)
and its own Redis key prefix; the trees alternate round by round, so load elsewhere
hits both alike, and the base's figures come with this tree's ratio to them.

Usage: REDIS_URL=redis://127.0.0.1:6379/8 python -m bench.bench_startup
       [--rounds 3] [--base /path/to/old/tree]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.05
IMPORTS = {"web": "backend.asgi", "chat": "workers.chat", "ingest": "workers.ingest"}


@dataclass(frozen=True)
class Tree:
    name: str
    path: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(data_dir: Path, redis_url: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "SEARCH_STORE": "embedded",
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
    }


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def import_seconds(tree: Tree, module: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of a fresh interpreter importing `module`: CPU is what a busy
    machine distorts least."""
    begun, cpu = time.perf_counter(), children_cpu()
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=tree.path, env=env, check=True)
    return time.perf_counter() - begun, children_cpu() - cpu


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def web_ready_seconds(tree: Tree, env: dict[str, str]) -> float:
    port = free_port()
    args = [sys.executable, "-m", "hypercorn", "backend.asgi:app", "--bind", f"127.0.0.1:{port}"]
    begun = time.perf_counter()
    process = subprocess.Popen(
        args, cwd=tree.path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while time.perf_counter() - begun < READY_TIMEOUT_SECONDS:
            if process.poll() is not None:
                raise RuntimeError(f"web process of {tree.name} exited early")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - begun
            except OSError:
                pass
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"web process of {tree.name} not ready")
    finally:
        stop(process)


def worker_ready_seconds(tree: Tree, queue: str, env: dict[str, str]) -> float:
    health_key = f"{env['REDIS_PREFIX']}:queue:{queue}:health-check"
    client = redis.Redis.from_url(env["REDIS_URL"])
    args = [sys.executable, "-m", "workers", queue]
    begun = time.perf_counter()
    process = subprocess.Popen(
        args, cwd=tree.path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while time.perf_counter() - begun < READY_TIMEOUT_SECONDS:
            if process.poll() is not None:
                raise RuntimeError(f"{queue} worker of {tree.name} exited early")
            if client.exists(health_key):
                return time.perf_counter() - begun
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"{queue} worker of {tree.name} not ready")
    finally:
        stop(process)
        for key in client.scan_iter(f"{env['REDIS_PREFIX']}:*"):
            client.delete(key)
        client.close()


def measure(tree: Tree, process: str, redis_url: str) -> tuple[float, float, float]:
    """(import wall, import CPU, ready wall) seconds of fresh processes of `tree`."""
    with tempfile.TemporaryDirectory(prefix="sluice-startup-") as data:
        env = environment(Path(data), redis_url, f"bench-startup-{uuid.uuid4().hex[:8]}")
        wall, cpu = import_seconds(tree, IMPORTS[process], env)
        if process == "web":
            return wall, cpu, web_ready_seconds(tree, env)
        return wall, cpu, worker_ready_seconds(tree, process, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", type=Path, help="an older tree to compare against")
    parser.add_argument("--processes", nargs="+", default=list(IMPORTS), choices=list(IMPORTS))
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        raise SystemExit("set REDIS_URL (a database index of your own: keys are written)")
    trees = [Tree("current", ROOT)]
    if args.base:
        trees.append(Tree("base", args.base.resolve()))
    for tree in trees:  # compile each tree's bytecode once, outside the clock
        for module in IMPORTS.values():
            import_seconds(tree, module, environment(Path(tempfile.gettempdir()), redis_url, "x"))
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for round_ in range(args.rounds):
        order = trees if round_ % 2 == 0 else trees[::-1]
        for process in args.processes:
            for tree in order:
                results.setdefault((tree.name, process), []).append(
                    measure(tree, process, redis_url)
                )
    header = f"{'process':8} {'tree':8} {'import s':>9} {'import cpu':>10} {'ready s':>8}"
    print(f"{header}   (min of {args.rounds} rounds)")
    for process in args.processes:
        best: dict[str, list[float]] = {}
        for tree in trees:
            runs = results[(tree.name, process)]
            best[tree.name] = [min(run[i] for run in runs) for i in range(3)]
            wall, cpu, ready = best[tree.name]
            print(f"{process:8} {tree.name:8} {wall:9.2f} {cpu:10.2f} {ready:8.2f}")
        if "base" in best:
            wall, cpu, ready = (c / b for c, b in zip(best["current"], best["base"], strict=True))
            print(
                f"{process:8} {'ratio':8} {wall:9.2f} {cpu:10.2f} {ready:8.2f}   (current / base)"
            )


if __name__ == "__main__":
    main()
