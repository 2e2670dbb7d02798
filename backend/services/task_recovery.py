"""Crash recovery: tasks whose worker died end `failed`, never stay `running`.

A generating worker refreshes the task's heartbeat key every second; if the worker is
killed (kill -9, OOM, lost host) the key expires a few seconds later. The reaper (a
cron job on every chat worker, and `reap_if_dead` for a web reader that finds a silent
task) fails such tasks with a clear error, appends a terminal `error` event so readers
end, and releases the reservation. The task is not retried: the prompt may already
have been partly answered and the user has seen those tokens, so the honest outcome is
a failure they can retry. `task_outcomes.fail` is a conditional transition, so
concurrent reapers (and a worker that was only slow) agree on one winner.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from arq.constants import job_key_prefix
from redis.asyncio import Redis
from tortoise import timezone

from backend.constants import task_heartbeat_key
from backend.models import Task
from backend.models.tasks import TaskState
from backend.services import task_outcomes
from backend.settings import Settings
from backend.streams.endings import settle_stream
from backend.streams.task_stream import TaskStream

log = logging.getLogger("sluice.tasks.recovery")

WORKER_LOST = "worker_lost"
WORKER_LOST_MESSAGE = (
    "The worker generating this answer stopped unexpectedly; send the message again"
)
NEVER_STARTED = "not_started"
NEVER_STARTED_MESSAGE = "The task was never picked up by a chat worker; send the message again"
# What ending a task needs; the stored request (the whole prompt) is not loaded.
SLIM = ("id", "state", "reservation_id", "started_at", "created_at")


async def heartbeat_alive(redis: Redis, settings: Settings, task_ids: list[str]) -> list[bool]:
    async with redis.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.exists(task_heartbeat_key(settings.redis_prefix, task_id))
        return [bool(n) for n in await pipe.execute()]


async def reap_if_dead(redis: Redis, settings: Settings, task_id: str) -> bool:
    """Fail one running task if its worker's heartbeat has expired; True if this call did.

    A live heartbeat answers from Redis alone, so readers can ask this often. A task
    found settled gets its stream's ending made from SQL if the stream lacks one.
    """
    if await redis.exists(task_heartbeat_key(settings.redis_prefix, task_id)):
        return False
    task = await Task.get_or_none(id=task_id)
    if task is None:
        return False
    if task.state.terminal:
        # Settled, yet its reader still waits: the ender lost the ending to a Redis
        # outage and died or gave up. The ending is made from SQL (never twice).
        await settle_stream(TaskStream.for_task(redis, settings, task_id), task)
        return False
    if task.state is not TaskState.RUNNING:
        return False
    return await reap_running(redis, settings, [task]) == 1


async def reap_running(redis: Redis, settings: Settings, tasks: list[Task]) -> int:
    grace = timezone.now() - timedelta(seconds=settings.task_heartbeat_ttl_seconds)
    # A task claimed a moment ago may not have its first heartbeat yet. The claim sets
    # started_at, so a running task without it was not started by a worker: not ours.
    candidates = [t for t in tasks if t.started_at is not None and t.started_at < grace]
    if not candidates:
        return 0
    alive = await heartbeat_alive(redis, settings, [t.id for t in candidates])
    reaped = 0
    for task, is_alive in zip(candidates, alive, strict=True):
        if not is_alive and await task_outcomes.fail(
            task,
            WORKER_LOST,
            WORKER_LOST_MESSAGE,
            expected=TaskState.RUNNING,
            redis=redis,
            settings=settings,
            retry_seconds=0,
        ):
            log.warning("reaped a task whose worker died", extra={"task_id": task.id})
            reaped += 1
    return reaped


async def reap_unstarted(redis: Redis, settings: Settings) -> int:
    """Fail tasks queued far too long whose arq job no longer exists."""
    cutoff = timezone.now() - timedelta(seconds=settings.task_queued_timeout_seconds)
    stale = await Task.filter(state=TaskState.QUEUED, created_at__lt=cutoff).only(*SLIM)
    reaped = 0
    for task in stale:
        if await redis.exists(job_key_prefix + task.id):
            continue
        if await task_outcomes.fail(
            task,
            NEVER_STARTED,
            NEVER_STARTED_MESSAGE,
            expected=TaskState.QUEUED,
            redis=redis,
            settings=settings,
            retry_seconds=0,
        ):
            reaped += 1
    return reaped


async def reap_stale_tasks(redis: Redis, settings: Settings) -> int:
    grace = timezone.now() - timedelta(seconds=settings.task_heartbeat_ttl_seconds)
    running = await Task.filter(state=TaskState.RUNNING, started_at__lt=grace).only(*SLIM)
    reaped = await reap_running(redis, settings, list(running))
    reaped += await reap_unstarted(redis, settings)
    return reaped
