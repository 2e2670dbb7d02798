"""Rendering the metrics in Prometheus' text format, and who may read them.

A web process with PROMETHEUS_MULTIPROC_DIR set answers for all its siblings: the
`MultiProcessCollector` sums the files every process of the directory writes, so
whichever process Hypercorn hands the scrape to, the figures are the deployment's (on
that machine). Without it, the process's own registry. Queue depths are read from Redis
at scrape time (they are the queues', not a process's).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from backend.constants import CHAT_QUEUE, INGEST_QUEUE, queue_name

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
QUEUES = (CHAT_QUEUE, INGEST_QUEUE)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class OwnProcess(Collector):
    """This process's metrics (the default registry), as one collector among others."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class QueueDepths(Collector):
    def __init__(self, depths: Mapping[str, int]) -> None:
        self.depths = depths

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "sluice_queue_depth",
            "Jobs in an arq queue, waiting or running (arq keeps a job there until it ends).",
            labels=["queue"],
        )
        for queue, depth in self.depths.items():
            family.add_metric([queue], depth)
        yield family


async def queue_depths(redis: Redis, prefix: str) -> dict[str, int]:
    async with redis.pipeline(transaction=False) as pipe:
        for queue in QUEUES:
            pipe.zcard(queue_name(prefix, queue))
        counts = await pipe.execute()
    return {queue: int(count) for queue, count in zip(QUEUES, counts, strict=True)}


def render(extra: Iterable[Collector] = (), *, own_process: bool = False) -> bytes:
    """The text exposition: every process of PROMETHEUS_MULTIPROC_DIR (or this process
    alone, when there is none or `own_process` asks), then `extra`."""
    registry = CollectorRegistry()
    if multiprocess_mode() and not own_process:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(OwnProcess())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


def process_ended() -> None:
    """Drop this process's live gauges (open connections) from the shared directory."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(os.getpid())


def access_refusal(token: str, authorization: str | None, client: str | None) -> str | None:
    """Why a scrape is refused, or None. With METRICS_TOKEN set, its bearer token is
    required; without, only loopback clients are answered."""
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token):
            return None
        return "Metrics need Authorization: Bearer <METRICS_TOKEN>"
    if is_loopback(client):
        return None
    return "Metrics are served to loopback clients only unless METRICS_TOKEN is set"


def is_loopback(client: str | None) -> bool:
    try:
        return client is not None and ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False
