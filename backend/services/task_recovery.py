"""Crash recovery: tasks whose worker died end `failed`, never stay `running`.

A generating worker refreshes the task's heartbeat key every second; if the worker is
killed (kill -9, OOM, lost host) the key expires a few seconds later. The reaper (a
cron job on every chat worker, and `reap_if_dead` for a web reader that finds a silent
task) fails such tasks with a clear error, appends a terminal `error` event so readers
end, and releases the reservation. The task is not retried: the prompt may already
have been partly answered and the user has seen those tokens, so the honest outcome is
a failure they can retry, and what was streamed is kept: stored as the assistant
message, as a cancelled answer is, and not charged. `task_outcomes.fail` is a
conditional transition, so concurrent reapers (and a worker that was only slow) agree
on one winner.

A missing heartbeat alone is not death: when Redis pauses or restarts for longer than
the heartbeat TTL, every heartbeat has expired when it answers again, though the workers
are alive and beat again within a heartbeat interval. So a task is reaped only when its heartbeat is
found missing twice, at least two heartbeat intervals apart (`CONFIRM_INTERVALS`), with
no sighting of it alive in between: the first sighting leaves a mark in Redis
(`task_silence_key`), whose age Redis measures on its own clock, and a live heartbeat
wipes it. Sightings need Redis to answer, so they all come after an outage, and a live
worker has re-beaten before the second. A killed worker's task ends within heartbeat TTL
+ confirmation + two reap intervals.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from enum import IntEnum

from arq.constants import job_key_prefix
from redis.asyncio import Redis
from tortoise import timezone

from backend.constants import task_heartbeat_key, task_silence_key
from backend.models import Task
from backend.models.tasks import TaskState
from backend.providers.tokens import count_tokens
from backend.services import task_outcomes
from backend.services.task_settlement import Answer
from backend.settings import Settings
from backend.streams.endings import settle_stream
from backend.streams.task_stream import TaskStream
from schemas.events import EventType, Reference

log = logging.getLogger("sluice.tasks.recovery")

WORKER_LOST = "worker_lost"
WORKER_LOST_MESSAGE = (
    "The worker generating this answer stopped unexpectedly; send the message again"
)
NEVER_STARTED = "not_started"
NEVER_STARTED_MESSAGE = "The task was never picked up by a chat worker; send the message again"
# What ending a task needs; the stored request (the whole prompt) is not loaded.
SLIM = ("id", "state", "session_id", "reservation_id", "started_at", "created_at")


# How far apart two sightings of a missing heartbeat must be, in heartbeat intervals: a
# live worker re-beats within one interval of Redis answering again.
CONFIRM_INTERVALS = 2
# KEYS[1] the heartbeat, KEYS[2] the silence mark; ARGV[1] the confirmation and ARGV[2]
# the mark's lifetime, in ms. Returns a `Sighting`.
SIGHTING = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return 0
end
local left = redis.call('PTTL', KEYS[2])
if left < 0 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  return 1
end
if tonumber(ARGV[2]) - left >= tonumber(ARGV[1]) then
  return 2
end
return 1
"""


class Sighting(IntEnum):
    """What one look at a running task's heartbeat found."""

    ALIVE = 0  # the heartbeat is there (any mark is wiped)
    SILENT = 1  # missing, but not since a sighting CONFIRM_INTERVALS ago (a first one marks)
    DEAD = 2  # missing, and missing at a sighting at least CONFIRM_INTERVALS ago


def confirm_seconds(settings: Settings) -> float:
    return CONFIRM_INTERVALS * settings.task_heartbeat_interval_seconds


def mark_lifetime_ms(settings: Settings) -> int:
    """Long enough for the slowest checker's next look (a reader checks once per SSE
    heartbeat when no worker is left), short enough to forget a sighting from before a
    long outage."""
    cadence = max(settings.task_reap_interval_seconds, settings.sse_heartbeat_seconds)
    seconds = confirm_seconds(settings) + 2 * cadence + settings.task_heartbeat_ttl_seconds
    return int(seconds * 1000)


async def sightings(redis: Redis, settings: Settings, task_ids: list[str]) -> list[Sighting]:
    """A look at each task's heartbeat, in one round trip."""
    confirm_ms = int(confirm_seconds(settings) * 1000)
    lifetime_ms = mark_lifetime_ms(settings)
    prefix = settings.redis_prefix
    async with redis.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            keys = (task_heartbeat_key(prefix, task_id), task_silence_key(prefix, task_id))
            pipe.eval(SIGHTING, 2, *keys, confirm_ms, lifetime_ms)
        return [Sighting(int(found)) for found in await pipe.execute()]


async def streamed_so_far(redis: Redis, settings: Settings, task_id: str) -> Answer | None:
    """What the dead worker had streamed (its tokens and sources), from the task's
    stream; None if nothing. Not charged, so the counts are only for the record."""
    entries = await TaskStream.for_task(redis, settings, task_id).read_after()
    text = "".join(e.payload()["delta"] for e in entries if e.type is EventType.TOKEN)
    if not text:
        return None
    sources = [e.payload() for e in entries if e.type is EventType.REFERENCE]
    return Answer(
        text=text,
        prompt_tokens=0,
        completion_tokens=count_tokens(text),
        reference=Reference.model_validate(sources[-1]) if sources else None,
    )


async def reap_if_dead(redis: Redis, settings: Settings, task_id: str) -> bool:
    """Fail one running task if its worker's heartbeat has stayed missing (two sightings
    apart); True if this call did.

    A live heartbeat answers from Redis alone, so readers can ask this often. A task
    found settled gets its stream's ending made from SQL if the stream lacks one.
    """
    [seen] = await sightings(redis, settings, [task_id])
    if seen is Sighting.ALIVE:
        return False
    task = await Task.get_or_none(id=task_id)
    if task is None:
        return False
    if task.state.terminal:
        # Settled, yet its reader still waits: the ender lost the ending to a Redis
        # outage and died or gave up. The ending is made from SQL (never twice).
        await settle_stream(TaskStream.for_task(redis, settings, task_id), task)
        return False
    if task.state is not TaskState.RUNNING or seen is not Sighting.DEAD:
        return False
    return await reap_running(redis, settings, [task]) == 1


async def reap_running(redis: Redis, settings: Settings, tasks: list[Task]) -> int:
    grace = timezone.now() - timedelta(seconds=settings.task_heartbeat_ttl_seconds)
    # A task claimed a moment ago may not have its first heartbeat yet. The claim sets
    # started_at, so a running task without it was not started by a worker: not ours.
    candidates = [t for t in tasks if t.started_at is not None and t.started_at < grace]
    if not candidates:
        return 0
    seen = await sightings(redis, settings, [t.id for t in candidates])
    reaped = 0
    for task, look in zip(candidates, seen, strict=True):
        if look is Sighting.DEAD and await task_outcomes.fail(
            task,
            WORKER_LOST,
            WORKER_LOST_MESSAGE,
            expected=TaskState.RUNNING,
            redis=redis,
            settings=settings,
            retry_seconds=0,
            partial=await streamed_so_far(redis, settings, task.id),
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
