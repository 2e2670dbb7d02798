"""arq's `Worker` on Sluice's Redis pool, woken by enqueues (`backend.job_queue`) rather
than polling, and without its per-poll re-check of jobs that are already running.

arq leaves a job in the queue's sorted set until it finishes and, on every poll, checks
each listed job with WATCH/EXISTS/ZSCORE/UNWATCH to see whether someone runs it. With
the chat worker's 5 ms poll delay and hundreds of streaming generations, that is
hundreds of thousands of Redis commands a second spent learning nothing. Here a poll
skips the jobs this process runs and claims all the others in one pipelined round trip:
per job, a Lua script does what arq's claim does (the job must not be in progress
anywhere and must be due; then its in-progress key is set) atomically, where arq spent
four round trips per job (WATCH, EXISTS, ZSCORE, MULTI…EXEC), paid by every answer.

The poll itself, arq's ZRANGEBYSCORE of the due jobs then the claims, is one script too
(`POLL_AND_CLAIM`): a wake-up costs one round trip and its reply holds only the jobs this
worker now runs, not the ids of every job in progress (which stay in the queue's sorted
set until they finish: at 100 streams, a hundred ids to read and skip on every poll).
The script also does arq's job fetch for each job it claims (`workers.job_claims`), so a
job starts one round trip after its wake-up, not two.
"""

from __future__ import annotations

import argparse
import contextvars
import importlib
import logging
import signal
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker, check_health, get_kwargs
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.connections import blocking_read_ms, open_redis
from backend.job_queue import WakeListener
from backend.observability import configure_logging
from backend.outage import Outage
from backend.settings import get_settings
from workers.job_claims import CLAIM, FETCHED, POLL_AND_CLAIM, RETRY_KEY_SECONDS, FetchedJob

QUEUES = ("chat", "ingest")
# A lost or refused connection, or a server that stopped answering (paused, restarting).
REDIS_OUTAGES = (RedisConnectionError, RedisTimeoutError, OSError)
log = logging.getLogger("sluice.worker")


class QueueWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # `poll_delay` becomes the longest wait for a wake-up (see backend.job_queue);
        # arq's own loop then goes straight from one poll to the wait for the next.
        # Capped below the socket timeout, which would end a quiet wait as an outage.
        cap = blocking_read_ms(get_settings(), self.poll_delay_s) / 1000
        self.idle_poll_seconds = cap
        self.poll_delay_s = 0
        self.wakes: WakeListener | None = None
        self.redis_outage = Outage("Redis", log)

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        """arq's drain (`job_completion_wait`): stop taking jobs, which stay queued for
        another worker, and give the jobs in progress that long before cancelling them.
        Said at WARNING (arq's own lines are INFO, silenced): a deploy's log shows it."""
        running = sum(not task.done() for task in self.tasks.values())
        log.warning(
            "%s: draining; %d jobs in progress get up to %s s, queued jobs stay for another worker",
            signal.Signals(signum).name,
            running,
            self._job_completion_wait,
        )
        self.request_drain()
        super().handle_sig_wait_for_completion(signum)

    def handle_sig(self, signum: signal.Signals) -> None:
        """arq's immediate stop (no drain time): jobs are cancelled at once; the ingest
        jobs hand their documents back all the same."""
        self.request_drain()
        super().handle_sig(signum)

    def request_drain(self) -> None:
        """Tell the jobs in progress that the worker is stopping (the ingest worker's
        `Drain` in its context: documents are handed back at their next boundary)."""
        drain = self.ctx.get("drain")
        if drain is not None:
            drain.request()

    async def main(self) -> None:
        while self._pool is None:
            try:
                self._pool = await open_redis(get_settings(), self.queue_name)
            except REDIS_OUTAGES as error:
                await self.redis_outage.failed(error)
        self.redis_outage.recovered()
        await super().main()

    async def _poll_iteration(self) -> None:
        """arq's poll, riding out a Redis outage: arq lets a lost connection end the
        worker for good; here the poll is tried again with back-off until Redis is back
        (redis-py reconnects by itself), while jobs in progress carry on."""
        try:
            if self.wakes is None:
                self.wakes = WakeListener(self.pool, self.queue_name)
            else:
                await self.wakes.wait(self.idle_poll_seconds)
            if self.burst or self.allow_abort_jobs:  # arq's own limits and aborts
                await super()._poll_iteration()
            else:
                await self.poll()
        except REDIS_OUTAGES as error:
            await self.redis_outage.failed(error)
            return
        self.redis_outage.recovered()

    async def poll(self) -> None:
        """arq's poll (`_poll_iteration` without burst limits and aborts, which neither
        queue uses), its read of the due jobs and their claims in one script."""
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            most = min(self.max_jobs - self.job_counter, self.queue_read_limit)
            now, ttl = timestamp_ms(), int(self.in_progress_timeout_s * 1000)
            claimed = await self.pool.eval(
                POLL_AND_CLAIM,
                1,
                self.queue_name,
                now,
                ttl,
                most,
                in_progress_key_prefix,
                self.queue_read_limit,
                job_key_prefix,
                retry_key_prefix,
                RETRY_KEY_SECONDS,
            )
            for index in range(0, len(claimed), 4):
                job_id, score, job, job_try = claimed[index : index + 4]
                job_id = job_id.decode()
                if job_id in self.tasks:  # its in-progress key lapsed: not a new try
                    await self.pool.decr(retry_key_prefix + job_id)
                    continue
                await self.sem.acquire()  # a free slot: `most` counted them
                self.job_counter += 1
                self.start_job(job_id, score, FetchedJob(job_id, job, job_try))
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()  # as arq: an error in run_job ends the worker
        await self.heart_beat()

    @property
    def pool(self) -> ArqRedis:
        """arq's pool, except for `run_job`'s first use in a job the poll fetched."""
        fetched = FETCHED.get()
        if fetched is not None and not fetched.used:
            return fetched  # type: ignore[return-value]  # it answers that one pipeline
        return self._pool  # type: ignore[return-value]

    def start_job(
        self, job_id: str, score: bytes | str | float, fetched: FetchedJob | None = None
    ) -> None:
        """arq's `run_job` as a task; with `fetched`, in a context that carries it."""
        context = None
        if fetched is not None:
            context = contextvars.copy_context()
            context.run(FETCHED.set, fetched)
        task = self.loop.create_task(self.run_job(job_id, int(float(score))), context=context)
        task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
        self.tasks[job_id] = task

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's `start_jobs` (a slot per job, up to `max_jobs`), its claims in one round
        trip and without the jobs this process already runs."""
        others = [job_id.decode() for job_id in job_ids]
        others = [job_id for job_id in others if job_id not in self.tasks]
        slots: list[str] = []
        for job_id in others:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                break
            self.job_counter += 1
            slots.append(job_id)
        if not slots:
            return
        now, ttl = timestamp_ms(), int(self.in_progress_timeout_s * 1000)
        try:
            async with self.pool.pipeline(transaction=False) as pipe:
                for job_id in slots:
                    keys = (in_progress_key_prefix + job_id, self.queue_name)
                    pipe.eval(CLAIM, 2, *keys, job_id, now, ttl)
                scores = await pipe.execute()
        except BaseException:
            for _ in slots:
                self._release_sem_dec_counter_on_complete()
            raise
        for job_id, score in zip(slots, scores, strict=True):
            if score is None:  # runs elsewhere, finished, or not due
                self._release_sem_dec_counter_on_complete()
                continue
            self.start_job(job_id, score)


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
