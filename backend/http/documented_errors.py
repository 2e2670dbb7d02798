"""The error responses each operation of the OpenAPI document lists, in the error envelope.

Most of them follow from what a route already declares, so the OpenAPI provider infers
them instead of eighty routes repeating them: a login-protected route can answer 401; a
route with ids in its path 404 (an id that is malformed, unknown or someone else's); a
route with a body 400 (unreadable), 413 (too large) and 422 (not the schema); a route
with validated query parameters 422. What comes from a route's own rules (402 for
credits, 403, 409, 410, 415, 429, 502, 503) is declared next to the route with
`@document_errors(...)`; `authenticated(admin=True)` declares its 403 itself.

A 500 is never documented: the API answers bad input with a 4xx, and the schemathesis
run in tests/test_openapi_conformance.py holds it to that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from schemas.envelope import ErrorBody

F = TypeVar("F", bound=Callable[..., Any])

ERROR_STATUSES_ATTRIBUTE = "_sluice_error_statuses"
ERROR_SCHEMA_NAME = "ErrorBody"
ERROR_SCHEMA_REF = f"#/components/schemas/{ERROR_SCHEMA_NAME}"

MEANINGS: dict[int, str] = {
    400: "Bad request: the body cannot be read as its media type, or a value breaks a rule "
    "the schema cannot express; the message says which",
    401: "Missing, invalid or expired credentials, or a disabled account",
    402: "Not enough credits for this request: redeem a code or ask an administrator",
    403: "Not allowed for this caller: administrators only, or not the owner",
    404: "Not found for this caller: no such id, a malformed one, or someone else's",
    409: "Conflicts with the current state: taken, busy, or already done",
    410: "Gone: consumed, expired or withdrawn",
    413: "Too large: the body, an image or the conversation passes its limit",
    415: "Unsupported media type",
    422: "The request does not match the documented schema; the message names each bad field",
    429: "Too many requests: retry after the Retry-After header's seconds",
    502: "An upstream service (model provider, WeChat) failed; retry in a few seconds",
    503: "A service this route needs is unavailable or not configured",
}
BODY_STATUSES = frozenset({400, 413, 422})


def document_errors(*statuses: int) -> Callable[[F], F]:
    """Declare error statuses a route answers beyond those the provider infers."""
    unknown = set(statuses) - set(MEANINGS)
    if unknown:
        raise ValueError(f"No documented meaning for status {sorted(unknown)}")

    def decorate(view: F) -> F:
        declared = getattr(view, ERROR_STATUSES_ATTRIBUTE, frozenset())
        setattr(view, ERROR_STATUSES_ATTRIBUTE, frozenset(declared) | frozenset(statuses))
        return view

    return decorate


def inferred_statuses(operation: dict[str, Any]) -> set[int]:
    """The statuses that follow from the operation's security, parameters and body."""
    statuses: set[int] = set()
    if operation.get("security"):
        statuses.add(401)
    places = {parameter["in"] for parameter in operation.get("parameters", [])}
    if "path" in places:
        statuses.add(404)
    if "query" in places:
        statuses.add(422)
    if "requestBody" in operation:
        statuses |= BODY_STATUSES
    return statuses


def error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": MEANINGS[status],
        "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer"},
            }
        }
    return response


def error_components() -> dict[str, Any]:
    """The envelope's schema, for the components every error response refers to."""
    return {ERROR_SCHEMA_NAME: ErrorBody.model_json_schema()}


def add_error_responses(operations: Iterable[dict[str, Any]], view: Callable[..., Any]) -> None:
    """Give each operation its inferred and declared error responses.

    A status the route documents itself (e.g. the OAuth2 token route's RFC 6749 401)
    keeps the route's own description.
    """
    declared = getattr(view, ERROR_STATUSES_ATTRIBUTE, frozenset())
    for operation in operations:
        responses = dict(operation["responses"])
        for status in sorted(inferred_statuses(operation) | declared):
            if status not in responses and str(status) not in responses:
                responses[status] = error_response(status)
        operation["responses"] = dict(sorted(responses.items(), key=lambda item: int(item[0])))
