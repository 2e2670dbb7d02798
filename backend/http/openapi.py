"""OpenAPI for responses that are not JSON: images, Server-Sent Events.

quart-schema documents every response as `application/json`. A route that answers with
bytes of another media type documents itself with a `RawBody` subclass, which this
provider renders with that media type.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from quart_schema.openapi import OpenAPIProvider


class RawBody:
    """A non-JSON response body, for `document_response` only (it is never validated)."""

    media_type: ClassVar[str]
    schema: ClassVar[dict[str, Any]] = {"type": "string", "format": "binary"}


class JpegImage(RawBody):
    """The image, as image/jpeg."""

    media_type = "image/jpeg"


class EventStream(RawBody):
    """A text/event-stream of `token`, `reference`, `usage` and one terminal event."""

    media_type = "text/event-stream"
    schema = {"type": "string"}


class SluiceOpenAPIProvider(OpenAPIProvider):
    def build_path_parameter(self, name: str, converter: Any) -> dict[str, Any]:
        """Path ids document their format (the converters of backend/http/path_ids.py)."""
        parameter = super().build_path_parameter(name, converter)
        schema = getattr(converter, "openapi_schema", None)
        if schema is not None:
            parameter["schema"] = dict(schema)
        return parameter

    def build_response_object(
        self, model: type, headers_model: type | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if isinstance(model, type) and issubclass(model, RawBody):
            response = {
                "content": {model.media_type: {"schema": dict(model.schema)}},
                "description": inspect.getdoc(model) or "",
            }
            return response, {}
        return super().build_response_object(model, headers_model)
