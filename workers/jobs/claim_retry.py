"""Claiming a task through a database outage.

A chat job is delivered once (`max_tries=1`: a generation that died is the reaper's, not
arq's, to end). Before, a claim that met PostgreSQL restarting (or SQLite locked past its
busy timeout) failed the job at once and left the task `queued` in SQL, its client
waiting until the queued timeout (10 minutes; 3 of 120 answers in a long chaos run).
Here the claim is retried with capped back-off, logged once per outage, for up to
TASK_SETTLE_RETRY_SECONDS, as the settle is (`backend/services/settle_retry.py`).

The claim is a conditional UPDATE, so a retry never claims twice. A claim whose commit
landed but whose reply was lost finds the task running when retried and reports it
taken; the task then has no worker and the reaper fails it `worker_lost` (its heartbeat
never appears). That needs the reply lost in the instant of the commit: not seen.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from backend.models import Task
from backend.outage import through_database_outage

log = logging.getLogger("sluice.worker.chat")


async def claim_through_outage(
    claim: Callable[[str], Awaitable[Task | None]], task_id: str, *, retry_seconds: float
) -> Task | None:
    """`claim(task_id)`, retried while the database is unreachable for up to
    `retry_seconds` (0: once)."""
    return await through_database_outage(
        lambda: claim(task_id), step="claiming a task", log=log, retry_seconds=retry_seconds
    )
