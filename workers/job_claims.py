"""How a worker claims its queue's jobs in Redis (Lua scripts), and arq's job fetch, read
by the poll's script instead of a round trip of its own.

`CLAIM` and `POLL_AND_CLAIM` replace arq's four-round-trip claim per job; see
workers/queue_worker.py for why.

arq's `run_job` starts with a MULTI: GET the job, INCR its try counter, EXPIRE the
counter. On the chat queue that round trip sits between the claim and the claim's SQL,
on every answer's way to its first token (0.5 to 1.5 ms at one stream on the 2-core VM,
docs/streaming.md, sixth pass). `POLL_AND_CLAIM` now does the same three commands for
each job it claims, in the same atomic script, and returns the job with its try; the
worker starts `run_job` with a `FetchedJob` in the task's context, and for that one job
the worker's `pool` hands `run_job` the fetched values instead of running the MULTI.

The stand-in only answers the exact pipeline arq 0.28's `run_job` builds (GET of the
job's key, INCR and EXPIRE of its retry key, in that order); any other use raises, so an
arq upgrade that changes `run_job` fails the suite (tests/test_queue_poll.py) instead of
silently counting a try twice or not at all.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from arq.constants import job_key_prefix, retry_key_prefix

# arq's run_job keeps a job's try counter this long (its literal, `expire(…, 88400)`).
RETRY_KEY_SECONDS = 88400

# KEYS: the job's in-progress key, the queue; ARGV: job id, now (ms), in-progress TTL (ms).
# The job's score when this worker now runs it; nil if it runs elsewhere, is gone or
# is not due yet (as arq's claim decides).
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return nil end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""

# KEYS: the queue; ARGV: now (ms), in-progress TTL (ms), most jobs to claim, arq's
# in-progress key prefix, most due jobs to look at, arq's job and retry key prefixes,
# the retry key's expiry (s). Each due job that runs nowhere is claimed as CLAIM does and
# fetched as arq's run_job fetches it (GET the job, INCR and EXPIRE its try counter);
# returns [id, score, job or nil, try, …] of those. The other keys are named in the
# script, not in KEYS: Sluice's Redis is one server (arq has no cluster support either).
POLL_AND_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[5])
local claimed, most = {}, tonumber(ARGV[3]) * 4
for i = 1, #due, 2 do
  if #claimed >= most then break end
  local key = ARGV[4] .. due[i]
  if redis.call('EXISTS', key) == 0 then
    redis.call('PSETEX', key, ARGV[2], '1')
    local retry = ARGV[7] .. due[i]
    local try = redis.call('INCR', retry)
    redis.call('EXPIRE', retry, ARGV[8])
    claimed[#claimed + 1] = due[i]
    claimed[#claimed + 1] = due[i + 1]
    claimed[#claimed + 1] = redis.call('GET', ARGV[6] .. due[i])
    claimed[#claimed + 1] = try
  end
end
return claimed
"""

# The job `run_job` is about to fetch, set only in the context of the task that runs it.
FETCHED: ContextVar[FetchedJob | None] = ContextVar("fetched_job", default=None)


@dataclass
class FetchedJob:
    """What `run_job`'s first pipeline would read for `job_id`: the job's bytes (None
    when it is gone: arq then fails it as expired) and its try, already counted."""

    job_id: str
    job: bytes | None
    job_try: int
    used: bool = False

    def pipeline(self, transaction: bool = True) -> FetchedPipeline:
        """The worker's `pool.pipeline` for `run_job`'s fetch: once, then the real pool."""
        self.used = True
        return FetchedPipeline(self)


@dataclass
class FetchedPipeline:
    """Records the commands `run_job` queues and answers them from the `FetchedJob`."""

    fetched: FetchedJob
    queued: list[tuple[Any, ...]] = field(default_factory=list)

    async def __aenter__(self) -> FetchedPipeline:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def get(self, key: str) -> None:
        self.queued.append(("GET", key))

    def incr(self, key: str) -> None:
        self.queued.append(("INCR", key))

    def expire(self, key: str, seconds: int) -> None:
        self.queued.append(("EXPIRE", key, seconds))

    async def execute(self) -> list[Any]:
        job_id = self.fetched.job_id
        expected = [
            ("GET", job_key_prefix + job_id),
            ("INCR", retry_key_prefix + job_id),
            ("EXPIRE", retry_key_prefix + job_id, RETRY_KEY_SECONDS),
        ]
        if self.queued != expected:
            raise RuntimeError(
                f"arq's run_job fetched {self.queued!r}, not the {expected!r} the poll "
                "script read for it: workers/job_claims.py must follow arq's run_job"
            )
        return [self.fetched.job, self.fetched.job_try, True]
