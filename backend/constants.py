"""Redis key names and queue names, all in one place. Every key starts with the prefix."""

CHAT_QUEUE = "chat"
INGEST_QUEUE = "ingest"


def queue_name(prefix: str, queue: str) -> str:
    return f"{prefix}:queue:{queue}"


def worker_health_key(prefix: str, queue: str) -> str:
    """arq's health-check key of the queue's workers: each live worker rewrites it every
    10 s with an 11 s expiry and deletes it when it stops; its absence means no live
    worker (backend/services/readiness.py)."""
    return f"{queue_name(prefix, queue)}:health-check"


def queue_wake_key(queue: str) -> str:
    """Stream a job's producer appends to after enqueueing it, waking the queue's workers."""
    return f"{queue}:wake"


def task_events_key(prefix: str, task_id: str) -> str:
    """Redis Stream of a task's events, appended by the worker."""
    return f"{prefix}:task:{task_id}:events"


def task_lease_key(prefix: str, task_id: str) -> str:
    """Held by the one reader currently delivering the task's stream."""
    return f"{prefix}:task:{task_id}:lease"


def task_consumed_key(prefix: str, task_id: str) -> str:
    """Set once the terminal event has been delivered: later reads get 410."""
    return f"{prefix}:task:{task_id}:consumed"


def task_cancel_key(prefix: str, task_id: str) -> str:
    """Set by `cancel`; the generating worker stops when it sees it."""
    return f"{prefix}:task:{task_id}:cancel"


def task_heartbeat_key(prefix: str, task_id: str) -> str:
    """Refreshed by the generating worker; its expiry means the worker died."""
    return f"{prefix}:task:{task_id}:heartbeat"


def task_silence_key(prefix: str, task_id: str) -> str:
    """Set by the reaper that first finds a running task's heartbeat missing; its age says
    how long the task has been seen silent (backend/services/task_recovery.py)."""
    return f"{prefix}:task:{task_id}:silence"


def login_failures_key(prefix: str, scope: str) -> str:
    """Failed password logins in the current window, per account+address or per address."""
    return f"{prefix}:login-failures:{scope}"


def stream_hub_wake_key(prefix: str, hub_id: str) -> str:
    """Per-process stream in the hub's blocking XREAD, written to wake it on new subscriptions."""
    return f"{prefix}:hub:{hub_id}:wake"


def stream_takeover_channel(prefix: str) -> str:
    """Pub/sub channel announcing "<task id> <lease>" when a resuming reader takes a stream
    over: every web process ends its deliveries of that task that hold another lease."""
    return f"{prefix}:stream-takeovers"


def document_feed_key(prefix: str, user_id: int) -> str:
    """Redis Stream of a user's document status events (capped in length and age); read,
    never consumed, by any number of the user's SSE and WebSocket connections."""
    return f"{prefix}:feed:{user_id}"


def ingest_lease_key(prefix: str, document_id: str) -> str:
    """Held and refreshed by the ingest job parsing a document; its expiry while the
    document is RUNNING means that worker died (backend/knowledge/ingest_recovery.py)."""
    return f"{prefix}:ingest:{document_id}:lease"


def ingest_orphan_key(prefix: str, document_id: str) -> str:
    """`run_id:unix time` of the first sweep that found a started run without its lease:
    the run is called dead only on a sweep a grace period later, so a job that outlived a
    Redis outage (its lease lapsed meanwhile) has time to take the lease back."""
    return f"{prefix}:ingest:{document_id}:orphan"


def ingest_resume_key(prefix: str, document_id: str) -> str:
    """Hash of the vectors a run embedded before its worker was stopped (a deploy), with
    the fingerprint of the texts they belong to, for the next run to resume from
    (backend/knowledge/embedding_resume.py)."""
    return f"{prefix}:ingest:{document_id}:resume"


def ingest_end_key(prefix: str, document_id: str, run_id: str) -> str:
    """Set when a run's end (done or failed) is appended to its owner's feed, so a retried
    append (through a Redis outage) adds it once (backend/knowledge/status_feed.py)."""
    return f"{prefix}:ingest:{document_id}:ended:{run_id}"


def ingest_restarts_key(prefix: str, document_id: str) -> str:
    """How many times a document was re-queued after its worker died, so a document that
    kills every worker that parses it ends FAIL instead of looping."""
    return f"{prefix}:ingest:{document_id}:restarts"


def revoked_login_key(prefix: str, login_id: str) -> str:
    """Set at logout until the login's last access token has expired: every access token
    carrying this login id (`sid`) is refused (backend/services/revocation.py)."""
    return f"{prefix}:revoked-login:{login_id}"


def credential_revocations_channel(prefix: str) -> str:
    """Pub/sub channel announcing a revoked credential ("<kind> <user id> <credential id>"):
    every web process closes its open WebSockets and SSE streams that use it."""
    return f"{prefix}:credential-revocations"
