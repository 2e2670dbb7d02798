"""`python -m backend web`: Hypercorn serving `backend.asgi:app`, draining on SIGTERM.

Hypercorn's own CLI tells the app nothing when it is told to stop: it closes its
listeners and waits (its graceful timeout) for every connection to end, and a stream
lasts as long as an answer, or hours for a feed or a WebSocket; a rolling deploy either
waited for them or cut them without a word. Here the shutdown trigger Hypercorn waits on
is ours: on SIGTERM (or SIGINT) it begins the app's drain (backend/http/drain.py: each
resumable stream ends with a reconnect hint, WebSockets close 1012) and returns, so
Hypercorn stops accepting and ends idle keep-alive connections. Requests in flight get
WEB_DRAIN_SECONDS (Hypercorn's graceful timeout) to finish; then the app shuts down.

With WEB_CONCURRENCY above 1 this process supervises that many serving processes on the
same sockets, as Hypercorn's does: a signal to it drains them all, and one that exits by
itself is replaced (one that fails stops the lot, for the process manager to restart).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as ProcessEvent

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import check_multiprocess_shutdown_event, load_application

from backend.settings import get_settings

APPLICATION = "backend.asgi:app"
KEEP_ALIVE_SECONDS = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
log = logging.getLogger("sluice.web")


def hypercorn_config(bind: str, workers: int, drain_seconds: float) -> Config:
    config = Config()
    config.application_path = APPLICATION
    config.bind = [bind]
    config.workers = workers
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.graceful_timeout = drain_seconds
    return config


async def until_stopped(shutdown_event: ProcessEvent | None) -> None:
    """Hypercorn's shutdown trigger: returns on a stop signal to this process (or the
    supervisor's event), having begun the app's drain."""
    from backend.asgi import app
    from backend.http.drain import drain_for

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    waits = [asyncio.ensure_future(stop.wait())]
    if shutdown_event is not None:
        waits.append(
            asyncio.ensure_future(check_multiprocess_shutdown_event(shutdown_event, asyncio.sleep))
        )
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    ended = drain_for(app).begin()
    log.warning(
        "stopping: no new connections; %d open streams told to reconnect; requests in "
        "flight get up to %s s",
        ended,
        app.config["SETTINGS"].web_drain_seconds,
    )


def serve(
    config: Config, sockets: Sockets | None = None, shutdown_event: ProcessEvent | None = None
) -> None:
    """One serving process (the target of the supervisor's children, so top-level)."""
    app = load_application(config.application_path, config.wsgi_max_body_size)

    async def trigger() -> None:
        await until_stopped(shutdown_event)

    asyncio.run(worker_serve(app, config, sockets=sockets, shutdown_trigger=trigger))
    # Everything is closed by now; the interpreter's last collection over the app's large
    # heap took seconds on exit (a rolling deploy waits on it): leave those objects be.
    gc.freeze()


def supervise(config: Config) -> int:
    sockets = config.create_sockets()
    context = get_context("spawn")
    shutdown = context.Event()

    def stop(*_: object) -> None:
        shutdown.set()

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    processes: list[BaseProcess] = []
    exitcode = 0
    try:
        while not shutdown.is_set():
            while len(processes) < config.workers:
                process = context.Process(
                    target=serve,
                    kwargs={"config": config, "sockets": sockets, "shutdown_event": shutdown},
                )
                process.start()
                processes.append(process)
            wait([process.sentinel for process in processes])
            for process in [p for p in processes if p.exitcode is not None]:
                processes.remove(process)
                if process.exitcode != 0:
                    exitcode = process.exitcode or 1
                    shutdown.set()
        for process in processes:
            process.join()
    finally:
        for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
            sock.close()
    return exitcode


def run(bind: str | None = None, workers: int | None = None) -> int:
    """Serve on `bind` (default 0.0.0.0:PORT) with `workers` processes (default
    WEB_CONCURRENCY, else 1) until told to stop; the exit code."""
    settings = get_settings()
    count = workers or int(os.environ.get("WEB_CONCURRENCY") or 1)
    bind = bind or f"0.0.0.0:{settings.port}"
    config = hypercorn_config(bind, max(1, count), settings.web_drain_seconds)
    if config.workers == 1:
        serve(config)
        return 0
    return supervise(config)
