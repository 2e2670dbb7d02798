"""A worker's own `/metrics` (WORKER_METRICS_PORT on WORKER_METRICS_BIND).

Workers serve no HTTP otherwise; a small aiohttp server on the worker's event loop
answers the scrape with that process's metrics (its tasks, its ingestion, its search
and storage calls) and the queue depths, under the same guard as the web's /metrics
(METRICS_TOKEN when set; else the bind address, loopback by default, is the guard).
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis

from backend.metrics.exposition import QueueDepths, access_refusal, queue_depths, render
from backend.settings import Settings

log = logging.getLogger("sluice.metrics")


class WorkerMetricsEndpoint:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self.scrape)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(
            self.runner, self.settings.worker_metrics_bind, self.settings.worker_metrics_port
        )
        await site.start()
        log.info(
            "metrics on http://%s:%d/metrics",
            self.settings.worker_metrics_bind,
            self.settings.worker_metrics_port,
        )

    async def scrape(self, request: web.Request) -> web.Response:
        token = self.settings.metrics_token
        # Without a token the bind address is the guard: whoever reaches it may read.
        if token and access_refusal(token, request.headers.get("Authorization"), None):
            return web.json_response({"code": 401, "message": "bad metrics token"}, status=401)
        extra = []
        try:
            extra.append(QueueDepths(await queue_depths(self.redis, self.settings.redis_prefix)))
        except Exception as exc:  # Redis down: the process's own figures still count
            log.warning("queue depths unavailable: %s", exc)
        body = render(extra, own_process=True)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
