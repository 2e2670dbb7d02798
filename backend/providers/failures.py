"""Upstream failures as `ProviderError`s with messages a user (or operator) can act on.

Shared by the SDK-specific providers so the same failure reads the same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from backend.providers.base import ProviderError, ProviderErrorCode


def retry_after_of(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def timed_out(upstream: str, seconds: float) -> ProviderError:
    return ProviderError(
        ProviderErrorCode.TIMEOUT,
        f"{upstream} did not answer within {seconds:g} s. Try again; operators can raise "
        "PROVIDER_TIMEOUT_SECONDS.",
        retryable=True,
    )


def rate_limited(upstream: str, retry_after: float | None) -> ProviderError:
    wait = f"after {retry_after:g} s" if retry_after is not None else "in a moment"
    return ProviderError(
        ProviderErrorCode.RATE_LIMITED,
        f"{upstream} is rate limiting requests. Try again {wait}.",
        retryable=True,
        retry_after=retry_after,
    )


def unauthorized(upstream: str, key_setting: str) -> ProviderError:
    return ProviderError(
        ProviderErrorCode.AUTH,
        f"{upstream} rejected the server's API key. An operator must check {key_setting}.",
    )


def rejected(upstream: str, detail: str) -> ProviderError:
    return ProviderError(
        ProviderErrorCode.BAD_REQUEST,
        f"{upstream} rejected the request: {detail.rstrip('.')}. "
        "Shorten the conversation or change the model or parameters.",
    )


def unavailable(upstream: str, detail: str) -> ProviderError:
    return ProviderError(
        ProviderErrorCode.UNAVAILABLE,
        f"{upstream} is unavailable ({detail}). Try again later.",
        retryable=True,
    )


def malformed(upstream: str, detail: str) -> ProviderError:
    return ProviderError(
        ProviderErrorCode.MALFORMED,
        f"{upstream} sent a malformed response ({detail}). Try again.",
        retryable=True,
    )


def from_status(
    upstream: str, key_setting: str, status: int, detail: str, headers: Mapping[str, str] | None
) -> ProviderError:
    """An HTTP error status from the upstream, by class."""
    if status in (401, 403, 498):
        return unauthorized(upstream, key_setting)
    if status == 429:
        return rate_limited(upstream, retry_after_of(headers))
    if status in (408, 499, 504):
        return unavailable(upstream, f"HTTP {status}")
    if 400 <= status < 500:
        return rejected(upstream, detail or f"HTTP {status}")
    return unavailable(upstream, f"HTTP {status}")


def refused(exc: BaseException) -> bool:
    """The connection was refused somewhere down the cause chain. The aiohttp transport
    reports a refused connection as a connect *timeout*, which would mislead the user."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def from_transport(upstream: str, exc: BaseException, timeout: float) -> ProviderError | None:
    """Errors below the SDK that some SDKs let through unwrapped. Matched by class name, as
    SDKs ship their own httpx flavour (httpx, httpx2) with the same exception hierarchy."""
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    if refused(exc):
        return unavailable(upstream, "could not connect: connection refused")
    if "TimeoutException" in kinds:
        return timed_out(upstream, timeout)
    if "RemoteProtocolError" in kinds or "ReadError" in kinds or "EndOfStream" in kinds:
        return unavailable(upstream, "the connection closed mid-response")
    if "TransportError" in kinds:
        return unavailable(upstream, f"could not connect: {type(exc).__name__}")
    if isinstance(exc, json.JSONDecodeError):
        return malformed(upstream, f"invalid JSON: {exc.msg}")
    return None
