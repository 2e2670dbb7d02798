"""Domain errors. Services raise these; the HTTP layer turns them into the envelope."""

from __future__ import annotations


class ApiError(Exception):
    """A failure the client can act on: an HTTP status and a message saying how."""

    status: int = 400

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.code = code if code is not None else self.status


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class PaymentRequired(ApiError):
    status = 402


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Gone(ApiError):
    status = 410


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class Unprocessable(ApiError):
    status = 422


class TooManyRequests(ApiError):
    status = 429

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BadGateway(ApiError):
    status = 502


class ServiceUnavailable(ApiError):
    """A dependency is down or not set up: answered with `Retry-After` (seconds), so a
    client backs off instead of hammering a recovering service."""

    status = 503

    def __init__(
        self, message: str, *, code: int | None = None, retry_after: int | None = 5
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
