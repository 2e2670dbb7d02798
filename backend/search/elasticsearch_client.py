"""How Sluice reaches an Elasticsearch cluster as production runs it.

A default Elasticsearch 8 install has security and TLS on, and a cluster has several
nodes; `ElasticsearchConnection` carries what the settings say about that (nodes,
credentials, the CA, shards and replicas of the indices Sluice creates) and
`client_of` builds the official async client from it. Everything about retrying is the
client's own: its node pool marks a node that refused or dropped a connection dead for
a while and sends the retry to the next one, and `retry_on_timeout` does the same for a
request that timed out. A 401/403 or a certificate the CA did not sign is not retried:
`unavailable_reason` turns those into the sentence readiness reports.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    AuthenticationException,
    AuthorizationException,
    ConnectionTimeout,
    SSLError,
    TransportError,
)
from elasticsearch import ConnectionError as ElasticsearchConnectionError
from elasticsearch.serializer import OrjsonSerializer

from backend.service_urls import hosts_of
from backend.settings import Settings


@dataclass(frozen=True)
class ElasticsearchConnection:
    hosts: tuple[str, ...]
    api_key: str = ""
    username: str = ""
    password: str = ""
    ca_certs: str = ""
    verify_certs: bool = True
    request_timeout: float = 30.0
    max_retries: int = 3
    shards: int = 1
    replicas: int = 0

    @classmethod
    def of_url(cls, url: str, **options: Any) -> ElasticsearchConnection:
        return cls(hosts=hosts_of(url), **options)

    @classmethod
    def from_settings(cls, settings: Settings) -> ElasticsearchConnection:
        return cls(
            hosts=hosts_of(settings.elasticsearch_url),
            api_key=settings.elasticsearch_api_key,
            username=settings.elasticsearch_username,
            password=settings.elasticsearch_password,
            ca_certs=settings.elasticsearch_ca_certs,
            verify_certs=settings.elasticsearch_verify_certs,
            request_timeout=settings.elasticsearch_request_timeout_seconds,
            max_retries=settings.elasticsearch_max_retries,
            shards=settings.elasticsearch_shards,
            replicas=settings.elasticsearch_replicas,
        )

    def index_settings(self) -> dict[str, int]:
        return {"number_of_shards": self.shards, "number_of_replicas": self.replicas}


def client_of(connection: ElasticsearchConnection) -> AsyncElasticsearch:
    options: dict[str, Any] = {
        "request_timeout": connection.request_timeout,
        "max_retries": connection.max_retries,
        "retry_on_timeout": True,
        "serializer": OrjsonSerializer(),
    }
    if connection.api_key:
        options["api_key"] = connection.api_key
    elif connection.username:
        options["basic_auth"] = (connection.username, connection.password)
    if connection.ca_certs:
        options["ca_certs"] = connection.ca_certs
    if not connection.verify_certs:
        # Only when ELASTICSEARCH_VERIFY_CERTS=false says so, never by default.
        options["verify_certs"] = False
        options["ssl_show_warn"] = False
    return AsyncElasticsearch(list(connection.hosts), **options)


def is_outage(exc: BaseException) -> bool:
    """The cluster cannot serve (as opposed to a request it refused as wrong): no node
    answered, TLS or credentials refused, or a 5xx such as no shard copy available."""
    if isinstance(exc, AuthenticationException | AuthorizationException):
        return True
    if isinstance(exc, ApiError):
        return exc.meta.status >= 500
    return isinstance(exc, TransportError)


def unavailable_reason(exc: BaseException) -> str:
    """What an operator should read when Elasticsearch cannot serve: wrong credentials,
    a certificate the configured CA did not sign, or no node answering."""
    if isinstance(exc, AuthenticationException):
        return "authentication failed (check ELASTICSEARCH_API_KEY or USERNAME/PASSWORD)"
    if isinstance(exc, AuthorizationException):
        return "the configured user may not read Sluice's indices"
    if isinstance(exc, SSLError) or _caused_by_tls(exc):
        return "TLS failed: the node's certificate is not signed by ELASTICSEARCH_CA_CERTS"
    if isinstance(exc, ConnectionTimeout | TimeoutError):
        return "no answer in time"
    if isinstance(exc, ElasticsearchConnectionError):
        return "no node answers"
    if isinstance(exc, ApiError):
        return f"answered {exc.meta.status}: {exc.message}"
    if isinstance(exc, TransportError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _caused_by_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        errors = getattr(seen, "errors", ())
        seen = seen.__cause__ or seen.__context__ or (errors[0] if errors else None)
    return False
