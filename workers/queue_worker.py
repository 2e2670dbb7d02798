"""arq's `Worker` on Sluice's Redis pool, woken by enqueues (`backend.job_queue`) rather
than polling, and without its per-poll re-check of jobs that are already running.

arq leaves a job in the queue's sorted set until it finishes and, on every poll, checks
each listed job with WATCH/EXISTS/ZSCORE/UNWATCH to see whether someone runs it. With
the chat worker's 5 ms poll delay and hundreds of streaming generations, that is
hundreds of thousands of Redis commands a second spent learning nothing. Here a poll
skips the jobs this process runs and asks Redis about all the others in one pipelined
round trip; only jobs nobody runs go through arq's own claim, which stays the one
place that decides who runs a job.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from typing import Any

from arq.constants import in_progress_key_prefix
from arq.worker import Worker, check_health, get_kwargs

from backend.connections import open_redis
from backend.job_queue import WakeListener
from backend.observability import configure_logging
from backend.settings import get_settings

QUEUES = ("chat", "ingest")


class QueueWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # `poll_delay` becomes the longest wait for a wake-up (see backend.job_queue);
        # arq's own loop then goes straight from one poll to the wait for the next.
        self.idle_poll_seconds = self.poll_delay_s
        self.poll_delay_s = 0
        self.wakes: WakeListener | None = None

    async def main(self) -> None:
        if self._pool is None:
            self._pool = await open_redis(get_settings(), self.queue_name)
        await super().main()

    async def _poll_iteration(self) -> None:
        if self.wakes is None:
            self.wakes = WakeListener(self.pool, self.queue_name)
        else:
            await self.wakes.wait(self.idle_poll_seconds)
        await super()._poll_iteration()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        others = [job_id for job_id in job_ids if job_id.decode() not in self.tasks]
        if not others:
            return
        async with self.pool.pipeline(transaction=False) as pipe:
            for job_id in others:
                pipe.exists(in_progress_key_prefix + job_id.decode())
            running = await pipe.execute()
        idle = [job_id for job_id, taken in zip(others, running, strict=True) if not taken]
        if idle:
            await super().start_jobs(idle)


def settings_of(queue: str) -> Any:
    """The queue's arq `WorkerSettings` class (imported late: it reads the settings)."""
    return importlib.import_module(f"workers.{queue}").WorkerSettings


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m workers", description="Run the worker of a queue, or check its health."
    )
    parser.add_argument("queue", choices=QUEUES)
    parser.add_argument(
        "--check", action="store_true", help="exit 0 if a worker of the queue is alive, else 1"
    )
    args = parser.parse_args()
    worker_settings = settings_of(args.queue)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    if logging.getLogger().level > logging.DEBUG:
        # arq logs every job run at INFO, the chat worker's reaper cron too (every 2 s).
        logging.getLogger("arq").setLevel(logging.WARNING)
    if args.check:
        raise SystemExit(check_health(worker_settings))
    QueueWorker(**get_kwargs(worker_settings)).run()
