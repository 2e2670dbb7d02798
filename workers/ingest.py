"""The `ingest` queue's worker: CPU-bound parsing, chunking, embedding, indexing.

Run with `python -m workers ingest`; `python -m workers ingest --check` is its health check.
"""

from __future__ import annotations

from backend.connections import redis_settings
from backend.constants import INGEST_QUEUE, queue_name
from backend.settings import get_settings
from workers.lifecycle import ping, shutdown, startup

_settings = get_settings()


class WorkerSettings:
    functions: list = [ping]
    queue_name = queue_name(_settings.redis_prefix, INGEST_QUEUE)
    health_check_key = f"{queue_name}:health-check"
    redis_settings = redis_settings(_settings)
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = 2
    health_check_interval = 10
