"""Ids in URL paths: `<id:name>` for public ids, `<user_id:name>` for user ids,
`<code:name>` for redeem codes.

A path segment that cannot be an id answers 404, exactly as an id that names nothing
(or someone else's thing) does, and never reaches SQL. The check lives in the URL
converters, so a route cannot forget it: every `{id}` of the API is declared with one.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from quart import Quart
from werkzeug.exceptions import NotFound
from werkzeug.routing import BaseConverter, IntegerConverter

from backend.http.responses import error_response
from schemas.credits import CODE_PATTERN
from schemas.ids import PUBLIC_ID_HINT, PUBLIC_ID_PATTERN, USER_ID_MAX, is_public_id, is_user_id

# Enough of a bad id to recognise it in the message, never a whole hostile path segment.
ECHO_LIMIT = 40
CODE_RE = re.compile(CODE_PATTERN)


def shown(value: str) -> str:
    return value[:ECHO_LIMIT].encode("unicode_escape").decode()


class UnknownPathId(NotFound):
    """A path id that cannot name anything: a 404 with the reason."""


class PublicIdConverter(BaseConverter):
    """Matches any one segment, so that a malformed id is a 404 about the id, not
    "no such route"."""

    openapi_schema: ClassVar[dict[str, Any]] = {
        "type": "string",
        "pattern": f"^{PUBLIC_ID_PATTERN}$",
    }

    def to_python(self, value: str) -> str:
        if not is_public_id(value):
            raise UnknownPathId(f"Not found: '{shown(value)}' is not an id ({PUBLIC_ID_HINT})")
        return value


class UserIdConverter(IntegerConverter):
    """Digits only (so `/users/me` stays its own route), within the SQL column's range."""

    openapi_schema: ClassVar[dict[str, Any]] = {
        "type": "integer",
        "minimum": 1,
        "maximum": USER_ID_MAX,
    }

    def to_python(self, value: str) -> int:
        user_id = int(value)
        if not is_user_id(user_id):
            raise UnknownPathId(f"User {value[:ECHO_LIMIT]} not found")
        return user_id


class CodeConverter(BaseConverter):
    """A redeem code as codes are minted (schemas/credits.py), else "not found"."""

    openapi_schema: ClassVar[dict[str, Any]] = {"type": "string", "pattern": CODE_PATTERN}

    def to_python(self, value: str) -> str:
        if CODE_RE.fullmatch(value) is None:
            raise UnknownPathId(f"Code '{shown(value)}' not found")
        return value


def register_path_ids(app: Quart) -> None:
    """Call before registering blueprints: their rules are compiled with these converters."""
    app.url_map.converters["id"] = PublicIdConverter
    app.url_map.converters["user_id"] = UserIdConverter
    app.url_map.converters["code"] = CodeConverter

    @app.errorhandler(UnknownPathId)
    async def unknown_path_id(error: UnknownPathId):
        return error_response(404, error.description or "Not found")
