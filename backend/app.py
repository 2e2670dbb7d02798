"""The Quart application factory."""

from __future__ import annotations

import logging
import time

from hypercorn.middleware import ProxyFixMiddleware
from quart import Quart, g, request
from quart_cors import cors
from quart_schema import HttpSecurityScheme, Info, OAuth2SecurityScheme, QuartSchema

from backend.connections import open_redis
from backend.database import close_database, migrate_database, open_database
from backend.garbage_collector import settle_after_start
from backend.http.body_limits import BodyLimits
from backend.http.credential_guard import stop_watch, watch_for
from backend.http.error_handlers import register_error_handlers
from backend.http.flow_control import FlowControlledConnection
from backend.http.forwarded_scheme import WebSocketScheme
from backend.http.openapi import SluiceOpenAPIProvider
from backend.http.path_ids import register_path_ids
from backend.http.request_metrics import ConnectionMetrics, register_request_metrics
from backend.http.requests import FORM_MAX_FIELDS, SluiceRequest
from backend.http.routes import admin_users, api_keys, health, session, users
from backend.http.routes import app_versions as app_versions_routes
from backend.http.routes import chat_sessions as chat_sessions_routes
from backend.http.routes import chats as chats_routes
from backend.http.routes import chunks as chunks_routes
from backend.http.routes import codes as codes_routes
from backend.http.routes import completions as completions_routes
from backend.http.routes import credits as credits_routes
from backend.http.routes import datasets as datasets_routes
from backend.http.routes import dify as dify_routes
from backend.http.routes import docs_assets as docs_assets_routes
from backend.http.routes import documents as documents_routes
from backend.http.routes import events as events_routes
from backend.http.routes import messages as messages_routes
from backend.http.routes import metrics as metrics_routes
from backend.http.routes import openai_chat as openai_chat_routes
from backend.http.routes import parsing as parsing_routes
from backend.http.routes import qanything as qanything_routes
from backend.http.routes import qanything_uploads as qanything_uploads_routes
from backend.http.routes import ragflow_ws as ragflow_ws_routes
from backend.http.routes import retrieval as retrieval_routes
from backend.http.routes import swiftchat as swiftchat_routes
from backend.http.routes import task_streams as task_streams_routes
from backend.http.routes import tasks as tasks_routes
from backend.http.routes import uploads as uploads_routes
from backend.http.routes import ws as ws_routes
from backend.metrics.exposition import process_ended
from backend.observability import accepted_request_id, configure_logging, request_id_var
from backend.providers.embedding_registry import close_embeddings, configure_embeddings
from backend.providers.registry import close_registry
from backend.providers.rerank_registry import close_rerankers, configure_rerankers
from backend.search.stores import close_search_store, configure_search_store
from backend.services.readiness import standard_probes
from backend.services.users import ensure_admin
from backend.settings import Settings, get_settings
from backend.signing_key import SigningKeyError, signing_key
from backend.storage.configured import check_storage_at_start, close_storage, storage_probe

log = logging.getLogger("sluice.http")

MIGRATION_LOCK = "migrate-lock"
EXPOSED_HEADERS = ["X-Task-ID", "X-Request-ID"]


def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        # Generated in DATA_DIR on first start when SECRET_KEY is unset (never a known key).
        signing_key(settings)
    except SigningKeyError as error:
        raise SystemExit(str(error)) from None

    app = Quart("sluice")
    # Bodies are bounded per route by BodyLimits and decoded by SluiceRequest.
    app.request_class = SluiceRequest
    # Streamed bodies (document uploads) are read only as fast as the route takes them.
    app.asgi_http_class = FlowControlledConnection
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        MAX_FORM_PARTS=FORM_MAX_FIELDS,
        # Streams outlive Quart's 60 s default; they end when the task ends.
        RESPONSE_TIMEOUT=None,
        BODY_TIMEOUT=120,
    )
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        openapi_provider_class=SluiceOpenAPIProvider,
        scalar_ui_path=None,
        info=Info(title="Sluice", version="0.1.0"),
        security_schemes={
            "bearer": HttpSecurityScheme(scheme="bearer", bearer_format="JWT or sk- API key"),
            "oauth2": OAuth2SecurityScheme(
                flows={"password": {"tokenUrl": "/api/v1/session/oauth2/token", "scopes": {}}}
            ),
        },
    )
    if settings.cors_origins:
        # Pages read the task id of a stream they started, and the request id to report.
        # The WebSocket checks origins itself (backend/http/routes/ws.py). Credentials
        # cannot be allowed for "*" (browsers refuse it); tokens travel in a header anyway.
        app = cors(
            app,
            allow_origin=settings.cors_origins,
            allow_credentials="*" not in settings.cors_origins,
            expose_headers=EXPOSED_HEADERS,
        )

    if settings.trusted_proxy_hops:
        app.asgi_app = ProxyFixMiddleware(  # type: ignore[method-assign]
            WebSocketScheme(app.asgi_app), mode="legacy", trusted_hops=settings.trusted_proxy_hops
        )
    app.asgi_app = BodyLimits(app, app.asgi_app)  # type: ignore[method-assign]
    app.asgi_app = ConnectionMetrics(app.asgi_app)  # type: ignore[method-assign]
    register_error_handlers(app)
    register_path_ids(app)
    register_request_logging(app)
    register_request_metrics(app)
    for blueprint in blueprints():
        app.register_blueprint(blueprint)
    # /readyz's dependencies; a part with its own (file storage) adds a probe here.
    app.config["READINESS"] = standard_probes(lambda: app.config["REDIS"], settings)
    app.config["READINESS"].add("storage", lambda within: storage_probe(settings, within))

    @app.before_serving
    async def startup() -> None:
        redis = await open_redis(settings)
        app.config["REDIS"] = redis
        async with redis.lock(f"{settings.redis_prefix}:{MIGRATION_LOCK}", timeout=300):
            await migrate_database(settings)
        await open_database(settings)
        await ensure_admin(settings)
        # Datasets name embedding models of this registry; deletes remove indexed chunks.
        configure_embeddings(settings)
        configure_rerankers(settings)
        configure_search_store(settings)
        # Open streams are closed when their credential is revoked (credential_guard.py).
        watch_for(app).start()
        # A storage that cannot be used is logged, not fatal: readiness names it.
        await check_storage_at_start(settings)
        # Last: the heap start-up built is frozen out of the collector's scans.
        settle_after_start(settings)

    @app.after_serving
    async def shutdown() -> None:
        await stop_watch(app)
        await app.config["REDIS"].aclose()
        await close_registry()
        await close_search_store()
        await close_storage()
        await close_embeddings()
        await close_rerankers()
        await close_database()
        process_ended()

    return app


def blueprints() -> list:
    return [
        health.blueprint,
        metrics_routes.blueprint,
        docs_assets_routes.blueprint,
        users.blueprint,
        admin_users.blueprint,
        api_keys.blueprint,
        session.blueprint,
        credits_routes.blueprint,
        codes_routes.blueprint,
        task_streams_routes.blueprint,
        chats_routes.blueprint,
        chat_sessions_routes.blueprint,
        datasets_routes.blueprint,
        documents_routes.blueprint,
        messages_routes.blueprint,
        parsing_routes.blueprint,
        chunks_routes.blueprint,
        retrieval_routes.blueprint,
        dify_routes.blueprint,
        qanything_routes.blueprint,
        qanything_uploads_routes.blueprint,
        events_routes.blueprint,
        completions_routes.blueprint,
        openai_chat_routes.blueprint,
        uploads_routes.blueprint,
        app_versions_routes.blueprint,
        swiftchat_routes.blueprint,
        tasks_routes.blueprint,
        ws_routes.blueprint,
        ragflow_ws_routes.blueprint,
    ]


def register_request_logging(app: Quart) -> None:
    @app.before_request
    async def start_request() -> None:
        g.request_id = accepted_request_id(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()
        request_id_var.set(g.request_id)

    @app.after_request
    async def finish_request(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        # The fields are gathered only for a line that is written (~5 µs a request where
        # LOG_LEVEL is above INFO, as under load).
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - g.get("started", 0)) * 1000, 2),
                    "user_id": getattr(g.get("user"), "id", None),
                },
            )
        return response
