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

arq's own `enqueue_job` spends three round trips (WATCH, EXISTS, then MULTI…EXEC) and
the wake a fourth; on the chat queue that was paid by every streamed answer. `enqueue`
writes the same job (arq's serializer, key, expiry and score) and the wake in one Lua
script: one round trip, atomic like arq's optimistic transaction. A `KeyClaim` rides
the same script: a streamed answer's reader lease is taken with its job, not by a SET of
its own (a round trip of ~120 µs of the web's CPU per streamed answer).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job, serialize_job
from arq.utils import timestamp_ms, to_ms
from redis.asyncio import Redis

from backend.constants import queue_wake_key

WAKE_MAX_LEN = 64

# KEYS: job, result, queue, wake stream[, claimed key]; ARGV: expiry ms, job bytes, score,
# job id, wake stream length[, claim value, claim ms]. A job id that is queued, running
# or has a result is not enqueued again (and claims nothing); 2 when the claim was set.
ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'j', '1')
if KEYS[5] and redis.call('SET', KEYS[5], ARGV[6], 'NX', 'PX', ARGV[7]) then return 2 end
return 1
"""
CLAIMED = 2


@dataclass
class KeyClaim:
    """A key set like `SET key value NX PX ttl_ms` by the enqueue that adds the job, in
    its round trip; `taken` tells whether it was set (not when the job was not added or
    the key was held)."""

    key: str
    value: str
    ttl_ms: int
    taken: bool = False


async def enqueue(
    redis: ArqRedis,
    queue: str,
    function: str,
    *args: Any,
    job_id: str | None = None,
    expires: float | None = None,
    claim: KeyClaim | None = None,
) -> Job | None:
    """What arq's `enqueue_job` does on `queue` (a full queue name), and the wake of its
    workers, in one round trip; and `claim`, if given, in the same trip.

    None, as with arq, when a job with `job_id` is already queued or running. A job not
    started within `expires` seconds is dropped (arq's default: a day).
    """
    job_id = job_id or uuid.uuid4().hex
    enqueued_ms = timestamp_ms()
    expires_ms = to_ms(expires) or redis.expires_extra_ms
    job = serialize_job(function, args, {}, None, enqueued_ms, serializer=redis.job_serializer)
    keys = [job_key_prefix + job_id, result_key_prefix + job_id, queue, queue_wake_key(queue)]
    args = [expires_ms, job, enqueued_ms, job_id, WAKE_MAX_LEN]
    if claim is not None:
        keys.append(claim.key)
        args += [claim.value, claim.ttl_ms]
    added = await redis.eval(ENQUEUE, len(keys), *keys, *args)
    if claim is not None:
        claim.taken = added == CLAIMED
    if not added:
        return None
    return Job(job_id, redis=redis, _queue_name=queue, _deserializer=redis.job_deserializer)


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
