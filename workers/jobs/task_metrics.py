"""The chat worker's task metrics: outcome, first-token latency, tokens per second.

First-token latency runs from the task's creation (when the web process accepted the
turn), so it includes the queue wait, retrieval and the model's prompt processing: what
the user waits for. Tokens per second run from the first token to the end.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from backend.metrics.instruments import TASK_FIRST_TOKEN_SECONDS, TASK_TOKENS_PER_SECOND, TASKS

Job = Callable[[dict[str, Any], str], Awaitable[str]]


def outcome_of(result: str) -> str:
    """The job's result is "succeeded", "failed", "cancelled" or "skipped: why"."""
    return result.partition(":")[0]


def counted(job: Job) -> Job:
    """Count every task the job ends by outcome ("error" when the job itself raised)."""

    @functools.wraps(job)
    async def counting(ctx: dict[str, Any], task_id: str) -> str:
        try:
            result = await job(ctx, task_id)
        except BaseException:
            TASKS.labels("error").inc()
            raise
        TASKS.labels(outcome_of(result)).inc()
        return result

    return counting


class TokenClock:
    def __init__(self, created_at: datetime) -> None:
        self.created_at = created_at
        self.first: float | None = None

    def token(self) -> None:
        if self.first is not None:
            return
        self.first = time.monotonic()
        created = self.created_at
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        waited = (datetime.now(UTC) - created).total_seconds()
        TASK_FIRST_TOKEN_SECONDS.observe(max(waited, 0.0))

    def finished(self, completion_tokens: int) -> None:
        if self.first is None or completion_tokens <= 0:
            return
        elapsed = time.monotonic() - self.first
        if elapsed > 0:
            TASK_TOKENS_PER_SECOND.observe(completion_tokens / elapsed)
