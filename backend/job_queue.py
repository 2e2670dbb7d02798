"""Enqueueing arq jobs so that workers start them at once instead of polling for them.

arq workers find jobs by polling their queue's sorted set; a short poll delay costs an
idle worker ~7% of a core and still adds half a delay to every first token, a long one
adds up to the delay. Here whoever enqueues also appends to the queue's wake stream, and
`QueueWorker` blocks on that stream between polls: a job is picked up one round trip
after it is enqueued, and an idle worker polls only every `poll_delay` seconds.

The wake is appended after the job, and a worker reads strictly after the last wake it
saw, so a job enqueued while a worker is polling wakes it again: none is left waiting
for the next idle poll. Every worker of the queue wakes; arq's claim still gives the
job to one.
"""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis
from arq.jobs import Job
from redis.asyncio import Redis

from backend.constants import queue_wake_key

WAKE_MAX_LEN = 64


async def enqueue(
    redis: ArqRedis,
    queue: str,
    function: str,
    *args: Any,
    job_id: str | None = None,
    expires: float | None = None,
) -> Job | None:
    """arq's `enqueue_job` on `queue` (a full queue name), then wake its workers.

    None, as with arq, when a job with `job_id` is already queued or running. A job not
    started within `expires` seconds is dropped (arq's default: a day).
    """
    job = await redis.enqueue_job(
        function, *args, _job_id=job_id, _queue_name=queue, _expires=expires
    )
    await redis.xadd(queue_wake_key(queue), {"j": "1"}, maxlen=WAKE_MAX_LEN, approximate=True)
    return job


class WakeListener:
    """A worker's view of its queue's wake stream."""

    def __init__(self, redis: Redis, queue: str) -> None:
        self.redis = redis
        self.key = queue_wake_key(queue)
        # From the start: a job announced before this worker started is polled for at once.
        self.last_id: bytes | str = "0-0"

    async def wait(self, seconds: float) -> bool:
        """Until a job is announced after the last wake seen, at most `seconds`; True if
        one was."""
        reply = await self.redis.xread(
            {self.key: self.last_id}, count=WAKE_MAX_LEN, block=max(1, int(seconds * 1000))
        )
        if not reply:
            return False
        self.last_id = reply[0][1][-1][0]
        return True
