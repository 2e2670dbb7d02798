"""Route decorators that authenticate the caller and put the user on `g.user`."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from quart import current_app, g, request
from quart_schema import security_scheme

from backend.errors import Forbidden, Unauthorized
from backend.http.credential_guard import watch_for
from backend.http.documented_errors import document_errors
from backend.models import User
from backend.services.authentication import authenticate_credential

F = TypeVar("F", bound=Callable[..., Any])

SECURITY = [{"bearer": []}, {"oauth2": []}]


def bearer_credential(allow_query_token: bool) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    if allow_query_token and request.args.get("access_token"):
        return request.args["access_token"]
    raise Unauthorized("Missing credentials: send 'Authorization: Bearer <token or API key>'")


def current_user() -> User:
    return g.user


def authenticated(func: F | None = None, *, admin: bool = False, query_token: bool = False):
    """Require a valid bearer token; `admin=True` also requires level 2.

    `query_token=True` accepts `?access_token=` too, for EventSource and WebSocket
    clients that cannot set headers; only streaming routes use it.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = bearer_credential(query_token)
            app = current_app
            # A stream this request opens is closed when the credential ends
            # (backend/http/credential_guard.py); the mark is taken before the check.
            g.revocation_mark = watch_for(app).mark()
            g.credential = await authenticate_credential(
                token, app.config["SETTINGS"], app.config["REDIS"]
            )
            g.user = g.credential.user
            if admin and not g.user.is_admin:
                raise Forbidden("Administrator permission (level 2) required")
            return await view(*args, **kwargs)

        if admin:
            document_errors(403)(wrapper)
        return security_scheme(SECURITY)(wrapper)  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate
