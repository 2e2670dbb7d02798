"""Every failure leaves as the error envelope with a matching status, never a bare 500."""

from __future__ import annotations

import logging
import time

from pydantic import ValidationError
from quart import Quart
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from backend.dependency_failures import DependencyFailure, dependency_failure
from backend.errors import ApiError, ServiceUnavailable, TooManyRequests
from backend.http.responses import error_response
from backend.search.store import SearchStoreUnavailable

log = logging.getLogger("sluice.http")

LOG_EVERY_SECONDS = 10.0
LAST_LOGGED: dict[str, float] = {}


def describe_validation_error(error: Exception) -> str:
    """One readable sentence naming each bad field, for the envelope's message."""
    cause = getattr(error, "validation_error", error)
    if isinstance(cause, ValidationError):
        parts = []
        for item in cause.errors():
            where = ".".join(str(p) for p in item["loc"]) or "body"
            parts.append(f"{where}: {item['msg']}")
        return "Invalid request: " + "; ".join(parts)
    if isinstance(cause, TypeError | ValueError):
        return f"Invalid request: {cause}"
    return "Invalid request body: expected JSON matching the documented schema"


def dependency_unavailable(failure: DependencyFailure, error: Exception):
    """The database or Redis is down or busy: a 503 (507 for a full disk) the client can
    retry, naming the dependency; the web process carries on and answers again as soon
    as the dependency is back (the drivers reconnect on the next request)."""
    now = time.monotonic()
    if now - LAST_LOGGED.get(failure.dependency, -LOG_EVERY_SECONDS) >= LOG_EVERY_SECONDS:
        # Every request fails alike during an outage: one line per dependency per interval.
        LAST_LOGGED[failure.dependency] = now
        log.warning("%s unavailable: %s: %s", failure.dependency, type(error).__name__, error)
    response = error_response(failure.status, failure.message)
    response.headers["Retry-After"] = str(failure.retry_after)
    return response


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def api_error(error: ApiError):
        response = error_response(error.status, error.message, error.code)
        if isinstance(error, TooManyRequests | ServiceUnavailable) and error.retry_after:
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(SearchStoreUnavailable)
    async def search_store_unavailable(error: SearchStoreUnavailable):
        """The cluster is down or refuses us: the operator's problem, not the caller's."""
        log.warning("search store unavailable: %s", error)
        response = error_response(503, f"The search store is unavailable ({error}); try again")
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(RequestSchemaValidationError)
    async def validation_error(error: RequestSchemaValidationError):
        return error_response(422, describe_validation_error(error))

    @app.errorhandler(RequestEntityTooLarge)
    async def too_large(error: RequestEntityTooLarge):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return error_response(413, f"Request body too large: the limit is {limit} bytes")

    @app.errorhandler(MethodNotAllowed)
    async def method_not_allowed(error: MethodNotAllowed):
        """405 with `Allow` (RFC 9110 requires it), for TRACE or any method a route lacks."""
        allowed = ", ".join(sorted(error.valid_methods or ()))
        response = error_response(
            405, f"Method not allowed on this route (allowed: {allowed}). See /docs for the API."
        )
        response.headers["Allow"] = allowed
        return response

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException):
        status = error.code or 500
        messages = {404: "Not found: no such route. See /docs for the API."}
        return error_response(status, messages.get(status, error.description or error.name))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception):
        failure = dependency_failure(error)
        if failure is not None:
            return dependency_unavailable(failure, error)
        log.exception("unhandled error", exc_info=error)
        return error_response(500, "Internal server error; quote the request_id when reporting it")
