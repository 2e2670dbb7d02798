"""The web process's fixed CPU per request, through the whole app, old code next to new.

Each figure drives the Quart app in-process through raw ASGI (scope, receive, send: no
socket, no Hypercorn), one request at a time, and divides this process's CPU
(`process_time`: aiosqlite's thread included) by the requests:

- a trivial authenticated GET (`/api/v1/users/me`);
- a streamed answer's POST (`/api/v1/tasks`, `stream: true`) up to its first frame
  (`event: task`): the hooks, the body limit, authentication, validation, the context,
  the creation SQL, the enqueue, the reader's lease and the response's start;
- that stream's end: a terminal entry (XADD'ed by this process) to the end of the body
  (the hub's wake, the last frame, the consume-and-release).

First, the parts changed, old next to new in this process (CPU per call, alternating):

- a streamed answer's enqueue and its reader's lease: the job's script, then a SET NX
  of the reader's own, against the lease taken in the job's script (one round trip);
- a WebSocket `send`'s enqueue and reader: a resume's opening (the task's row, consumed,
  last entry, a SET NX) against the new task's, its lease taken with the job;
- the body limit of a route: every rule matched per request, against the limits of
  static routes remembered;
- the request log's and metrics' after-request hooks (LOG_LEVEL=WARNING): the log's
  fields built for nothing and `labels()` per request, against neither.

Then the whole app, old and new being two trees of the code (`--old-tree`, or
`git archive --old-ref` into a temporary directory; new is this checkout, or
`--new-tree`): each round runs one child process per tree, alternating, each against
its own migrated SQLite database and Redis prefix. Each figure is a tree's least
disturbed round (the minimum: on a shared machine noise only adds). Logging as the bench
stack runs it (LOG_LEVEL=WARNING) and as a deployment does (INFO, JSON lines to stderr,
here /dev/null).

Usage: python -m bench.bench_request_paths [--rounds N] [--requests N]
       [--old-ref REF | --old-tree PATH] [--new-tree PATH] [--log-levels L,L]
       [--parts-only] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL_ID = "bench-model"
PATHS = ("GET /users/me", "POST stream, first frame", "stream end")


def child_settings(data_dir: str, log_level: str) -> dict[str, str]:
    models = [
        {
            "id": MODEL_ID,
            "provider": "openai",
            "upstream": "bench-upstream",
            "base_url": "http://127.0.0.1:9/v1",
            "context_window": 8192,
            "max_output": 120,
            "prompt_price": 0,
            "completion_price": 0,
            "capabilities": ["text"],
        }
    ]
    return {
        "DATA_DIR": data_dir,
        "DATABASE_URL": "",
        "REDIS_PREFIX": f"bench-req-{uuid.uuid4().hex[:8]}",
        "SECRET_KEY": "bench-secret-key-long-enough-for-hs256",
        "LOG_LEVEL": log_level,
        "MODELS": json.dumps(models),
        "DEFAULT_MODEL": MODEL_ID,
        "OPENAI_API_KEY": "bench",
        "NEW_USER_CREDITS": "0",
    }


# --- the child: one tree's app, driven in-process ---------------------------------------


class Exchange:
    """One ASGI request: its body in, what the app sends out, the first body frame."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent: list[dict] = []
        self.first_frame = asyncio.Event()
        self.done = asyncio.Event()
        self.disconnect = asyncio.Event()
        self.body_given = False

    async def receive(self) -> dict:
        if not self.body_given:
            self.body_given = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body":
            if message.get("body"):
                self.first_frame.set()
            if not message.get("more_body", False):
                self.done.set()


def scope_of(method: str, path: str, token: str, body: bytes) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"accept", b"text/event-stream"),
        (b"user-agent", b"bench"),
    ]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
        "state": {},
    }


async def child(requests: int, profile: str | None) -> dict[str, float]:
    from backend.app import create_app
    from backend.models import Assistant, ChatSession, User
    from backend.services.tokens import issue_access_token
    from backend.settings import Settings
    from backend.streams.task_stream import TaskStream

    settings = Settings(_env_file=None)
    app = create_app(settings)
    await app.startup()
    redis = app.config["REDIS"]
    user = await User.create(username=f"bench{uuid.uuid4().hex[:8]}", credits=10**9)
    assistant = await Assistant.create(owner_id=user.id, name="b", llm={"model_name": MODEL_ID})
    warm = 20
    sessions = [
        (await ChatSession.create(assistant_id=assistant.id, user_id=user.id)).id
        for _ in range(requests + warm)
    ]
    token = issue_access_token(user, settings)
    get_scope = scope_of("GET", "/api/v1/users/me", token, b"")
    spent = dict.fromkeys(PATHS, 0.0)
    profiler = None
    task_ids: list[str] = []

    async def get_once() -> None:
        exchange = Exchange(b"")
        await app(dict(get_scope), exchange.receive, exchange.send)
        assert exchange.sent[0]["status"] == 200, exchange.sent

    async def stream_once(session_id: str, measured: bool) -> None:
        body = json.dumps(
            {"session_id": session_id, "question": "Tell me a story.", "stream": True}
        ).encode()
        exchange = Exchange(body)
        started = time.process_time()
        running = asyncio.ensure_future(
            app(scope_of("POST", "/api/v1/tasks", token, body), exchange.receive, exchange.send)
        )
        await exchange.first_frame.wait()
        opened = time.process_time()
        assert exchange.sent[0]["status"] == 200, exchange.sent
        task_id = dict(exchange.sent[0]["headers"])[b"x-task-id"].decode()
        task_ids.append(task_id)
        key = TaskStream.for_task(redis, settings, task_id).key
        ending = time.process_time()
        await redis.xadd(key, {"type": "done", "data": '{"completion_tokens":0}'})
        await exchange.done.wait()
        await running
        ended = time.process_time()
        if measured:
            spent[PATHS[1]] += opened - started
            spent[PATHS[2]] += ended - ending

    for index in range(warm):
        await get_once()
        await stream_once(sessions[index], False)
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.process_time()
    for _ in range(requests):
        await get_once()
    spent[PATHS[0]] = time.process_time() - started
    for index in range(requests):
        await stream_once(sessions[warm + index], True)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    keys = [key async for key in redis.scan_iter(f"{settings.redis_prefix}*")]
    keys += [f"arq:job:{task_id}" for task_id in task_ids]  # arq's keys have no prefix
    await redis.delete(*keys)
    await app.shutdown()
    return {name: seconds / requests * 1e6 for name, seconds in spent.items()}


# --- the parts changed, old next to new in this process ---------------------------------


def old_limit_for(limits: Any, scope: dict) -> int:
    """BodyLimits.limit_for before: every rule matched on every request."""
    from werkzeug.exceptions import HTTPException

    from backend.http.body_limits import LIMIT_ATTRIBUTE

    limit = limits.settings.json_body_max_bytes
    try:
        endpoint, _ = limits.app.url_map.bind("localhost").match(
            scope["path"], method=scope["method"]
        )
    except HTTPException:
        return limit
    limit_of = getattr(limits.app.view_functions.get(endpoint), LIMIT_ATTRIBUTE, None)
    if limit_of is not None:
        limit = limit_of(limits.settings)
    return min(limit, limits.settings.max_body_bytes)


def compare(name: str, spent: dict[str, float], calls: int) -> None:
    old, new = (spent[k] / calls * 1e6 for k in ("old", "new"))
    print(f"  {name:<48} {old:>8.1f} {new:>8.1f} µs {new / old:>6.2f}x")


async def socket_send_opening(
    settings: Any, redis: Any, queue: str, jobs: list[str], rounds: int, runs: int
) -> None:
    """A WebSocket `send`'s enqueue and reader: the job, then a resume's opening (the
    task's row, consumed, last entry, SET NX), against the lease taken with the job and
    the new task's opening."""
    from backend.constants import task_lease_key
    from backend.database import close_database, open_database
    from backend.job_queue import KeyClaim, enqueue
    from backend.models import Task, User
    from backend.services.tasks import ReaderLease
    from backend.streams.delivery import open_new_task_reader, open_task_reader
    from backend.streams.hub import StreamHub
    from bench.alternation import cpu_alternating

    await open_database(settings)
    user = await User.create(username=f"bench{uuid.uuid4().hex[:8]}", credits=0)
    hub = StreamHub(redis, settings.redis_prefix)
    fresh = [await Task.create(user_id=user.id, model="m") for _ in range(2 * rounds * runs)]
    jobs += [task.id for task in fresh]

    async def old() -> None:
        task = fresh.pop()
        await enqueue(redis, queue, "f", task.id, job_id=task.id)
        reader = await open_task_reader(
            user, task.id, None, redis=redis, hub=hub, settings=settings
        )
        reader.closed = True  # the lease expires with the bench's keys

    async def new() -> None:
        task = fresh.pop()
        lease = ReaderLease(settings.stream_lease_seconds)
        key = task_lease_key(settings.redis_prefix, task.id)
        claim = KeyClaim(key, uuid.uuid4().hex, int(lease.seconds * 1000))
        await enqueue(redis, queue, "f", task.id, job_id=task.id, claim=claim)
        reader = await open_new_task_reader(
            task, redis=redis, hub=hub, settings=settings, lease=claim.value
        )
        reader.closed = True

    spent = await cpu_alternating(old, new, rounds, runs)
    compare("WebSocket send: enqueue and the reader", spent, rounds * runs)
    await close_database()


def old_after_hooks() -> list[Any]:
    """The request log's and metrics' after-request hooks before: the log's fields built
    whatever the level, the metrics' children looked up by `labels()` every time."""
    from quart import g, request

    from backend.app import log
    from backend.http.request_metrics import METHODS, route_of
    from backend.metrics.instruments import HTTP_REQUESTS, HTTP_SECONDS

    async def finish_request(response: Any) -> Any:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.get("started", 0)) * 1000, 2),
                "user_id": getattr(g.get("user"), "id", None),
            },
        )
        return response

    async def count_request(response: Any) -> Any:
        method = request.method if request.method in METHODS else "OTHER"
        route = route_of()
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)
        return response

    return [finish_request, count_request]


async def after_hooks(app: Any, rounds: int, runs: int) -> None:
    """Quart's after-request pass of a GET at LOG_LEVEL=WARNING, our hooks old and new
    (the façades' error hooks run in both)."""
    from quart import Response

    hooks = app.after_request_funcs[None]
    variants = {"old": old_after_hooks() + hooks[2:], "new": list(hooks)}
    response = Response("{}", mimetype="application/json")
    spent = {"old": 0.0, "new": 0.0}
    async with app.test_request_context("/api/v1/users/me", method="GET"):
        await app.preprocess_request()
        for _ in range(rounds):
            for label, funcs in variants.items():
                app.after_request_funcs[None] = funcs
                started = time.process_time()
                for _ in range(runs):
                    await app.process_response(response)
                spent[label] += time.process_time() - started
    app.after_request_funcs[None] = hooks
    compare("after-request hooks of a GET (WARNING)", spent, rounds * runs)


async def parts(env: dict[str, str], rounds: int, runs: int) -> None:
    import secrets

    from backend.app import create_app
    from backend.connections import open_redis
    from backend.http.body_limits import BodyLimits
    from backend.job_queue import KeyClaim, enqueue
    from backend.settings import Settings
    from bench.alternation import cpu_alternating

    settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})
    redis = await open_redis(settings)
    queue = f"{settings.redis_prefix}:queue"
    jobs: list[str] = []
    print(f"parts (CPU per call, this process){'':<17} {'old':>8} {'new':>8}")

    async def old_enqueue() -> None:
        job_id = uuid.uuid4().hex
        jobs.append(job_id)
        await enqueue(redis, queue, "f", job_id, job_id=job_id)
        token = secrets.token_hex(16)
        await redis.set(f"{queue}:{job_id}:lease", token, nx=True, px=30000)

    async def new_enqueue() -> None:
        job_id = uuid.uuid4().hex
        jobs.append(job_id)
        claim = KeyClaim(f"{queue}:{job_id}:lease", secrets.token_hex(16), 30000)
        await enqueue(redis, queue, "f", job_id, job_id=job_id, claim=claim)

    spent = await cpu_alternating(old_enqueue, new_enqueue, rounds, runs)
    compare("enqueue and the reader's lease", spent, rounds * runs)
    await socket_send_opening(settings, redis, queue, jobs, rounds, runs // 4)
    keys = [key async for key in redis.scan_iter(f"{settings.redis_prefix}*")]
    keys += [f"arq:job:{job_id}" for job_id in jobs]
    for index in range(0, len(keys), 500):
        await redis.delete(*keys[index : index + 500])
    await redis.aclose()

    app = create_app(settings)
    limits = app.asgi_app.app  # ConnectionMetrics around BodyLimits
    assert isinstance(limits, BodyLimits)
    for path, method in (("/api/v1/tasks", "POST"), ("/api/v1/users/me", "GET")):
        scope = {"type": "http", "path": path, "method": method}
        assert old_limit_for(limits, scope) == limits.limit_for(scope)
        spent = {"old": 0.0, "new": 0.0}
        for _ in range(rounds):
            for label, work in (
                ("old", lambda s=scope: old_limit_for(limits, s)),
                ("new", lambda s=scope: limits.limit_for(s)),
            ):
                started = time.process_time()
                for _ in range(runs * 20):
                    work()
                spent[label] += time.process_time() - started
        compare(f"body limit of {method} {path}", spent, rounds * runs * 20)
    await after_hooks(app, rounds, runs * 20)


# --- the parent: old and new trees, alternating -----------------------------------------


@contextmanager
def old_tree(path: str | None, ref: str) -> Iterator[Path]:
    if path:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory() as directory:
        archive = subprocess.run(
            ["git", "archive", ref], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
        yield Path(directory)


def migrate(tree: Path, env: dict[str, str]) -> None:
    """`backend migrate` of `tree`'s code: the schema its processes expect."""
    command = [sys.executable, "-m", "backend", "migrate"]
    subprocess.run(command, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)


def run_child(tree: Path, requests: int, log_level: str, profile: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, **child_settings(data_dir, log_level), "PYTHONPATH": str(tree)}
        migrate(tree, env)
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(requests)]
        if profile:
            command += ["--profile", profile]
        done = subprocess.run(
            command,
            cwd=tree,
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        return json.loads(done.stdout.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--old-ref", default="HEAD")
    parser.add_argument("--old-tree", default="")
    parser.add_argument("--new-tree", default=str(ROOT))
    parser.add_argument("--log-levels", default="WARNING,INFO")
    parser.add_argument("--parts-only", action="store_true")
    parser.add_argument("--profile", default="", help="cProfile the new tree's run to FILE")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        figures = asyncio.run(child(args.child, args.profile or None))
        print(json.dumps(figures))
        return
    if args.profile:
        run_child(ROOT, args.requests, "WARNING", args.profile)
        print(f"profile of the new tree written to {args.profile}")
        return
    with tempfile.TemporaryDirectory() as data_dir:
        env = child_settings(data_dir, "WARNING")
        migrate(ROOT, {**os.environ, **env})
        asyncio.run(parts(env, args.rounds * 2, 200))
    if args.parts_only:
        return
    with old_tree(args.old_tree, args.old_ref) as tree:
        for level in args.log_levels.split(","):
            runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
            for _ in range(args.rounds):
                for label, code in (("old", tree), ("new", Path(args.new_tree))):
                    runs[label].append(run_child(code, args.requests, level, None))
            print(f"LOG_LEVEL={level}: {'path (CPU per request)':<34} {'old':>8} {'new':>8}")
            # The least disturbed round of each: noise on a shared machine only adds.
            for name in PATHS:
                old, new = (min(r[name] for r in runs[k]) for k in ("old", "new"))
                print(f"  {name:<48} {old:>8.0f} {new:>8.0f} µs {new / old:>6.2f}x")


if __name__ == "__main__":
    main()
