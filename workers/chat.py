"""The `chat` queue's worker: I/O-bound LLM generation, high concurrency.

Run with `python -m workers chat`; `python -m workers chat --check` is its health check.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arq import cron, func

from backend.connections import redis_settings
from backend.constants import CHAT_QUEUE, queue_name
from backend.garbage_collector import settle_after_start
from backend.providers.registry import close_registry
from backend.providers.tokens import count_tokens
from backend.services.tasks import GENERATE_ANSWER_JOB
from backend.settings import get_settings
from backend.storage.configured import close_storage
from backend.streams.event_writer import EventWriter, share
from workers import lifecycle
from workers.jobs.chat import generate_answer
from workers.jobs.reaper import reap_tasks
from workers.jobs.watch import Watch

_settings = get_settings()


async def startup(ctx: dict[str, Any]) -> None:
    await lifecycle.startup(ctx)
    # One for every generation of the process: their token appends share round trips.
    # It rides out a Redis outage for REDIS_OUTAGE_TOLERANCE_SECONDS (the answers go on).
    ctx["event_writer"] = EventWriter(
        ctx["redis"], outage_tolerance_seconds=_settings.redis_outage_tolerance_seconds
    )
    # An answer's ending (and the reaper's) rides it too (backend/streams/endings.py).
    share(ctx["event_writer"])
    # One watch loop for every generation of the process (a job's ctx is a copy of this
    # one: made per job, each answer had a loop of its own, and an outage a log line each).
    # Its heartbeat SET and DEL per answer ride the writer's appends (workers/jobs/watch.py).
    ctx["watch"] = Watch(ctx["redis"], ctx["settings"], ctx["event_writer"])
    # Loading the tokenizer takes about a second; do it before the first cancel needs it.
    await asyncio.to_thread(count_tokens, "warm-up")
    # Last: the heap start-up built is frozen out of the collector's scans.
    settle_after_start(_settings)


async def shutdown(ctx: dict[str, Any]) -> None:
    if "watch" in ctx:
        await ctx["watch"].close()
    if "event_writer" in ctx:
        await ctx["event_writer"].aclose()
    await close_registry()
    # Chat images are read from file storage when a turn is sent.
    await close_storage()
    await lifecycle.shutdown(ctx)


class WorkerSettings:
    functions: list = [
        lifecycle.ping,
        # One try: a generation that died is failed by the reaper, not re-run by arq.
        func(
            generate_answer,
            name=GENERATE_ANSWER_JOB,
            max_tries=1,
            timeout=_settings.chat_job_timeout_seconds,
            # The outcome lives on the task row; an arq result nobody reads costs a write.
            keep_result=0,
        ),
    ]
    cron_jobs = [
        cron(
            reap_tasks,
            second=set(range(0, 60, _settings.task_reap_interval_seconds)),
            run_at_startup=True,
            timeout=60,
        )
    ]
    queue_name = queue_name(_settings.redis_prefix, CHAT_QUEUE)
    health_check_key = f"{queue_name}:health-check"
    redis_settings = redis_settings(_settings)
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = _settings.chat_worker_max_jobs
    job_timeout = _settings.chat_job_timeout_seconds
    # Enqueues wake the worker (backend.job_queue); this is only the idle poll.
    poll_delay = _settings.chat_worker_poll_delay_seconds
    keep_result = 60
    health_check_interval = 10
    # SIGTERM drains: no new jobs, answers in progress finish (workers/queue_worker.py).
    job_completion_wait = _settings.worker_drain_seconds
