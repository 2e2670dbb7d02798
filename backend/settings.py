"""Process configuration, read once from the environment and `.env`.

Every variable is documented, with its default, in `.env.example`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from backend.setting_forms import origins_list, startup_error_line

# The placeholder SECRET_KEY of earlier versions: public, so refused (backend/signing_key.py).
PUBLIC_SECRET_KEY = "change-me-in-production-please-32b"
SECRET_KEY_MIN_BYTES = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Twelve-factor basics.
    port: int = 8000
    data_dir: Path = Path("data")
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "sluice"
    # A Redis command unanswered this long raises (a paused or unreachable server answers
    # 503, not a hung request); blocking reads wait less than this (backend/connections.py).
    redis_socket_timeout_seconds: float = Field(5.0, ge=0.5)
    # Empty: a random key kept in DATA_DIR/secret_key (backend/signing_key.py).
    secret_key: str = ""
    # This process is one of several replicas: shared settings must then be explicit.
    replica_mode: bool = False
    admin_username: str = ""
    admin_password: str = ""

    # HTTP.
    # Comma-separated origins or a JSON list (NoDecode: the env source must not JSON-parse).
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxy_hops: int = 0
    max_body_bytes: int = 32 * 1024 * 1024
    # On SIGTERM the web process stops accepting, tells open streams to reconnect
    # elsewhere and gives requests in flight this long to finish (`python -m backend web`).
    web_drain_seconds: float = Field(30.0, ge=0)
    # Body limits per route (backend/http/body_limits.py), all capped by max_body_bytes.
    json_body_max_bytes: int = 1024 * 1024
    json_media_body_max_bytes: int = 16 * 1024 * 1024
    log_level: str = "INFO"
    log_json: bool = True

    # Identity.
    # Short: a stolen access token is good for minutes; clients refresh (docs/identity.md).
    access_token_ttl_seconds: int = Field(15 * 60, ge=1)
    refresh_token_ttl_seconds: int = 90 * 24 * 3600
    wechat_appid: str = ""
    wechat_secret: str = ""
    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_timeout_seconds: float = 10.0
    avatar_max_bytes: int = 5 * 1024 * 1024
    login_failure_window_seconds: int = 900
    login_max_failures: int = 10
    login_max_failures_per_address: int = 100

    # Credits.
    new_user_credits: int = 100

    # Delivery: task streams over SSE and WebSocket.
    stream_retention_seconds: int = 3600
    stream_max_events: int = 100_000
    stream_lease_seconds: float = 30.0
    stream_lease_wait_seconds: float = 1.0
    sse_heartbeat_seconds: float = 15.0
    sse_retry_seconds: float = 2.0
    ws_auth_timeout_seconds: float = 5.0

    # Chat tasks: generation on the chat worker, cancel, crash recovery.
    task_heartbeat_ttl_seconds: int = 5
    task_heartbeat_interval_seconds: float = 1.0
    task_cancel_poll_seconds: float = 0.1
    # A token event carries the deltas of this window (docs/streaming.md, Measured).
    # 4 ms keeps token-by-token delivery; 40 ms halves the CPU per token (docs/streaming.md).
    task_coalesce_ms: float = 4.0
    # Under load the window widens (workers/jobs/coalescing.py): TASK_COALESCE_MS up to
    # this many generations in the worker process, TASK_COALESCE_MAX_MS from the busy
    # count, in proportion between.
    task_coalesce_max_ms: float = Field(40.0, ge=0)
    task_coalesce_idle_generations: int = Field(8, ge=0)
    task_coalesce_busy_generations: int = Field(64, ge=1)
    task_queued_timeout_seconds: int = 600
    task_reap_interval_seconds: int = 2
    # A worker whose answer is complete retries storing it through a database outage this
    # long, keeping the task's heartbeat, so the reaper does not throw it away.
    task_settle_retry_seconds: float = Field(60.0, ge=0)
    # A chat worker whose token appends meet Redis unreachable (restart, failover, pause)
    # keeps the answer going and retries them this long before failing the task
    # (docs/operations.md, "Redis outages mid-answer"); 0 = fail at the first error.
    redis_outage_tolerance_seconds: float = Field(60.0, ge=0)
    chat_job_timeout_seconds: int = 900
    chat_worker_poll_delay_seconds: float = 0.5
    chat_worker_max_jobs: int = 1000
    # On SIGTERM a chat worker stops taking jobs and lets the answers in progress finish
    # for up to this long (queued ones stay for another worker), then exits; 0 = at once.
    # An ingest worker hands its documents back at their next embedding batch's end
    # (backend/knowledge/ingest_drain.py), or when this runs out.
    worker_drain_seconds: int = Field(30, ge=0)
    # Web and chat worker processes: once started, the start-up heap is frozen out of the
    # garbage collector's scans and its young generation is collected every this many net
    # allocations (CPython's default 700 took 6-9% of their CPU under load:
    # backend/garbage_collector.py); 0 keeps CPython's defaults.
    gc_young_threshold: int = Field(10_000, ge=0)

    # Chats: assistants, sessions, messages, uploaded chat images.
    upload_image_max_bytes: int = 10 * 1024 * 1024
    # Images (avatars and chat uploads): checked from the header before decoding.
    image_max_pixels: int = Field(4096 * 4096, ge=1)
    image_decode_concurrency: int = Field(1, ge=1)

    # Models and providers: the model registry and upstream LLM endpoints.
    models: str = ""
    default_model: str = ""
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str = ""
    cohere_base_url: str = "https://api.cohere.com"
    cohere_api_key: str = ""
    provider_timeout_seconds: float = 60.0
    provider_max_retries: int = 0
    local_model_path: str = ""
    local_model_threads: int = 2
    local_model_context: int = 2048
    # Local generations run at once per chat worker process (one llama.cpp context each).
    local_model_parallel: int = Field(2, ge=1, le=64)
    image_base_url: str = ""
    image_api_key: str = ""
    image_model: str = "dall-e-3"

    # Knowledge: datasets and their documents (files under DATA_DIR/documents).
    document_max_bytes: int = 16 * 1024 * 1024
    document_upload_max_bytes: int = 32 * 1024 * 1024
    default_embedding_model: str = "multilingual-e5-small@local"

    # File storage (backend/storage/): every file Sluice keeps. Empty: the local directory
    # DATA_DIR (file://DATA_DIR); file:///path for another one; s3://bucket/prefix for an
    # S3-compatible store at S3_ENDPOINT_URL (empty: AWS). Credentials: the AWS_* variables.
    storage_url: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    aws_access_key_id: str = ""
    aws_secret_access_key: str = ""
    aws_session_token: str = ""
    # Uploads above this go to S3 in parts of this size (S3's floor is 5 MiB); a part is
    # gathered in memory up to 1 MiB, in a temporary file (TMPDIR) beyond.
    s3_part_size_mb: int = Field(8, ge=5, le=512)
    s3_timeout_seconds: float = Field(30.0, gt=0)

    # Knowledge: embedding models (backend/providers/embeddings.py) and the search store.
    embedding_models: str = ""
    embedding_batch_size: int = Field(16, ge=1, le=2048)
    local_embedding_threads: int = Field(0, ge=0)
    # Embedding batches are sized to take about this long (backend/knowledge/batch_pace.py).
    embedding_batch_seconds: float = Field(1.0, gt=0)
    search_store: Literal["embedded", "elasticsearch"] = "embedded"
    # Questions embedded at once by the local model per process (short ones first, one
    # slot always left for short ones: backend/providers/query_line.py).
    local_embedding_query_slots: int = Field(2, ge=1, le=16)
    search_db_path: str = ""
    search_vector_cache_mb: int = Field(512, ge=0)
    elasticsearch_url: str = "http://127.0.0.1:9200"
    elasticsearch_index_prefix: str = "sluice"
    # A production cluster (backend/search/elasticsearch_client.py): ELASTICSEARCH_URL may
    # name several nodes (comma-separated); an API key or a user and password; the CA that
    # signed the nodes' certificates (verification stays on unless explicitly turned off).
    elasticsearch_api_key: str = ""
    elasticsearch_username: str = ""
    elasticsearch_password: str = ""
    elasticsearch_ca_certs: str = ""
    elasticsearch_verify_certs: bool = True
    # Of every index Sluice creates (a replica needs a second node to be allocated).
    elasticsearch_shards: int = Field(1, ge=1, le=1024)
    elasticsearch_replicas: int = Field(0, ge=0, le=16)
    elasticsearch_request_timeout_seconds: float = Field(30.0, gt=0)
    # Retries of a request on a timeout or a lost connection, on the next node.
    elasticsearch_max_retries: int = Field(3, ge=0, le=20)

    # Retrieval: rerank models (backend/providers/rerank.py) and how they are used.
    rerank_models: str = ""
    rerank_top_n: int = Field(64, ge=1, le=1000)
    rerank_timeout_seconds: float = Field(10.0, gt=0)
    # Answers over knowledge bases that cite nothing get `[ID:n]` inserted after
    # generation, sentence by sentence (backend/search/citations.py).
    auto_citations: bool = True

    # Knowledge: the ingest worker (backend/knowledge/ingestion.py) and the status feed.
    ingest_worker_max_jobs: int = Field(16, ge=1)
    # Taken in turns, round-robin by user then document (backend/knowledge/ingest_turns.py).
    ingest_parse_slots: int = Field(2, ge=1)
    ingest_embedding_slots: int = Field(4, ge=1)
    ingest_max_chunks: int = Field(5000, ge=0)
    # A parse's time limit: base + per MB of file, at most INGEST_PARSE_TIMEOUT_SECONDS.
    ingest_parse_base_seconds: float = Field(10.0, gt=0)
    ingest_parse_seconds_per_mb: float = Field(10.0, ge=0)
    ingest_document_timeout_seconds: float = Field(1800.0, gt=0)
    ingest_parse_timeout_seconds: float = Field(120.0, gt=0)
    ingest_parse_memory_mb: int = Field(1024, ge=0)
    # OCR of scans and images (backend/knowledge/parsing/ocr.py), in the parse child: the
    # operator's switch, each page's own time budget, the resolution PDF pages are
    # rendered at, the most pages a document may have OCR'd, ONNX Runtime's threads.
    ocr_enabled: bool = True
    ocr_page_seconds: float = Field(60.0, gt=0)
    ocr_dpi: int = Field(200, ge=72, le=600)
    ocr_max_pages: int = Field(2000, ge=1)
    ocr_threads: int = Field(1, ge=1, le=64)
    # The parse child's memory cap for PDFs and images when OCR is on (if larger than
    # INGEST_PARSE_MEMORY_MB): the detector needs 500-700 MB for a page.
    ocr_memory_mb: int = Field(1536, ge=256)
    ingest_lease_seconds: float = Field(10.0, gt=0)
    ingest_cancel_poll_seconds: float = Field(0.5, gt=0)
    ingest_max_restarts: int = Field(2, ge=0)
    ingest_sweep_interval_seconds: int = Field(5, ge=1, le=59)
    ingest_queued_timeout_seconds: float = Field(60.0, gt=0)
    # How long a document's step waits out a dependency outage (PostgreSQL, Redis, the
    # search store) before its run ends FAIL naming the step (backend/knowledge/step_retry.py).
    ingest_outage_retry_seconds: float = Field(300.0, ge=0)
    chunk_embed_wait_seconds: float = Field(10.0, ge=0)
    document_parser_wait_seconds: float = Field(150.0, gt=0)
    feed_retention_seconds: int = Field(3600, ge=1)
    feed_max_events: int = Field(1000, ge=1)
    feed_progress_interval_seconds: float = Field(0.5, ge=0)

    # Operators: Prometheus metrics (backend/metrics/) and readiness (/readyz).
    metrics_enabled: bool = True
    metrics_token: str = ""
    worker_metrics_port: int = Field(0, ge=0, le=65535)
    worker_metrics_bind: str = "127.0.0.1"
    readiness_timeout_seconds: float = Field(1.5, gt=0, le=10)
    # A queue (chat, ingest) with no live worker: reported by /readyz as "degraded" (200)
    # by default, since the web process still serves everything else; true makes it a 503.
    readiness_requires_workers: bool = False

    @field_validator("cors_origins", mode="before")
    @classmethod
    def parse_cors_origins(cls, value: Any) -> Any:
        """`http://a.example,https://b.example` or `["http://a.example"]` (see setting_forms)."""
        return origins_list(value) if isinstance(value, str) else value

    @field_validator("secret_key")
    @classmethod
    def check_secret_key(cls, value: str) -> str:
        """A set key must not be the old public placeholder and must have 32 bytes or more."""
        if not value:
            return value
        if value == PUBLIC_SECRET_KEY:
            raise ValueError(
                "is the public placeholder of earlier versions: anyone could sign tokens with "
                "it; unset it (a random key is kept in DATA_DIR) or set 32+ random bytes"
            )
        if len(value.encode()) < SECRET_KEY_MIN_BYTES:
            raise ValueError(
                f"has {len(value.encode())} bytes; use at least {SECRET_KEY_MIN_BYTES} random "
                "bytes, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        return value

    @model_validator(mode="after")
    def check_replica_secret_key(self) -> Settings:
        """Replicas must sign alike: a key generated in one DATA_DIR is not the others'."""
        if self.replica_mode and not self.secret_key:
            raise ValueError(
                "SECRET_KEY must be set when REPLICA_MODE is on: every replica signs and "
                "checks tokens with it (32+ random bytes, the same everywhere)"
            )
        return self

    @model_validator(mode="after")
    def check_replica_shared_state(self) -> Settings:
        """A replica keeps nothing on its own disk: what lives in DATA_DIR (SQLite, the
        embedded search store, local files) would be seen by one replica only."""
        if not self.replica_mode:
            return self
        if not self.database_url.startswith(("postgres://", "postgresql://")):
            raise ValueError(
                "DATABASE_URL must name PostgreSQL when REPLICA_MODE is on: SQLite lives in "
                "one DATA_DIR (postgres://user:password@host:5432/db)"
            )
        if self.search_store != "elasticsearch":
            raise ValueError(
                "SEARCH_STORE must be elasticsearch when REPLICA_MODE is on: the embedded "
                "store lives in one DATA_DIR (and set ELASTICSEARCH_URL)"
            )
        if not self.storage_url.startswith("s3://"):
            raise ValueError(
                "STORAGE_URL must be s3://bucket/prefix when REPLICA_MODE is on: local files "
                "are seen by one machine only (and set S3_ENDPOINT_URL and AWS_* credentials)"
            )
        return self

    @model_validator(mode="after")
    def check_models(self) -> Settings:
        """A bad MODELS entry or DEFAULT_MODEL stops the process at start, naming it."""
        from backend.providers.catalog import default_id_of, parse_entries

        default_id_of(parse_entries(self.models), self.default_model)
        return self

    @model_validator(mode="after")
    def check_embedding_models(self) -> Settings:
        """A bad EMBEDDING_MODELS entry or DEFAULT_EMBEDDING_MODEL stops the process."""
        from backend.providers.embeddings import check_default, parse_embedding_entries

        check_default(parse_embedding_entries(self.embedding_models), self.default_embedding_model)
        return self

    @model_validator(mode="after")
    def check_rerank_models(self) -> Settings:
        """A bad RERANK_MODELS entry stops the process at start, naming it."""
        from backend.providers.rerank import parse_rerank_entries

        parse_rerank_entries(self.rerank_models)
        return self

    @model_validator(mode="after")
    def check_storage(self) -> Settings:
        """A STORAGE_URL that names no directory or bucket stops the process at start."""
        from backend.service_urls import parse_storage_url

        parse_storage_url(self.storage_url, self.data_dir)
        return self

    @model_validator(mode="after")
    def check_elasticsearch(self) -> Settings:
        """ELASTICSEARCH_URL's nodes parse, and one kind of credentials is given."""
        from backend.service_urls import hosts_of

        hosts_of(self.elasticsearch_url)
        if self.elasticsearch_api_key and self.elasticsearch_username:
            raise ValueError(
                "set ELASTICSEARCH_API_KEY or ELASTICSEARCH_USERNAME/PASSWORD, not both"
            )
        if self.elasticsearch_password and not self.elasticsearch_username:
            raise ValueError("ELASTICSEARCH_PASSWORD is set without ELASTICSEARCH_USERNAME")
        return self

    @property
    def effective_database_url(self) -> str:
        """SQLite under DATA_DIR unless DATABASE_URL says otherwise."""
        if self.database_url:
            return self.database_url
        return f"sqlite://{(self.data_dir / 'sluice.sqlite3').resolve()}"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"

    @property
    def search_db_file(self) -> Path:
        """The embedded search store's SQLite file: SEARCH_DB_PATH, or under DATA_DIR."""
        if self.search_db_path:
            return Path(self.search_db_path)
        return self.data_dir / "search.sqlite3"


@lru_cache
def get_settings() -> Settings:
    """The process's settings; an invalid one stops the process with one line naming it."""
    try:
        return Settings()
    except (ValidationError, SettingsError) as error:
        raise SystemExit(startup_error_line(error)) from None
