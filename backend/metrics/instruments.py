"""Every metric Sluice exports, defined once per process at import.

With the environment variable PROMETHEUS_MULTIPROC_DIR set (several web processes, or
web and workers on one machine), prometheus-client keeps each process's values in files
there and `exposition.render` sums them; the gauges say how (`livesum`: only processes
still running count). Counters are totals since start: Prometheus' `rate()` turns them
into per-second figures (documents and chunks ingested per second, failures per second).

Label values are few and fixed (route templates, not paths; outcome words, not
messages), so a series count stays bounded whatever clients send.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# -- HTTP (backend/http/request_metrics.py) ---------------------------------------------
HTTP_REQUESTS = Counter(
    "sluice_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "sluice_http_request_duration_seconds",
    "Time to a response's headers (a stream's body is not counted), by route and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
OPEN_CONNECTIONS = Gauge(
    "sluice_open_connections",
    "Open long-lived connections: kind is sse (an event-stream response) or websocket.",
    ["kind"],
    multiprocess_mode="livesum",
)

# -- chat tasks (workers/jobs/chat.py) --------------------------------------------------
TASK_FIRST_TOKEN_SECONDS = Histogram(
    "sluice_task_first_token_seconds",
    "From a task's creation to its first answer token on the stream.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0),
)
TASK_TOKENS_PER_SECOND = Histogram(
    "sluice_task_tokens_per_second",
    "Completion tokens per second of a finished answer, after its first token.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
TASKS = Counter(
    "sluice_tasks",
    "Chat tasks the chat worker ended, by outcome (succeeded, failed, cancelled, skipped).",
    ["outcome"],
)

# -- ingestion (backend/knowledge/ingestion.py) -----------------------------------------
INGEST_DOCUMENTS = Counter(
    "sluice_ingest_documents",
    "Document runs the ingest worker ended, by outcome (done, failed: the failures, "
    "their reasons on the runs; stopped, skipped).",
    ["outcome"],
)
INGEST_CHUNKS = Counter("sluice_ingest_chunks", "Chunks indexed by finished document runs.")

# -- search (backend/search/*_store.py) -------------------------------------------------
SEARCH_SECONDS = Histogram(
    "sluice_search_seconds",
    "Search store latency by store (embedded, elasticsearch) and leg: keyword and vector "
    "(Elasticsearch: the node's own `took`), legs (both, as the caller waited).",
    ["store", "leg"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# -- file storage (backend/storage/) ----------------------------------------------------
STORAGE_ERRORS = Counter(
    "sluice_storage_errors",
    "File storage operations that failed, by backend (local, s3) and operation "
    "(write, read, delete, ...).",
    ["backend", "operation"],
)
