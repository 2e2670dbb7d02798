"""The OpenAPI document's provider: non-JSON responses, path id formats, error responses.

quart-schema documents every response as `application/json`. A route that answers with
bytes of another media type documents itself with a `RawBody` subclass, which this
provider renders with that media type (and, for a status that answers JSON or a stream
depending on the request, with both). Every operation also lists its error responses
(backend/http/documented_errors.py).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, get_args

from quart_schema import DataSource
from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import Rule

from backend.http.documented_errors import add_error_responses, error_components
from schemas.events import TaskEvent

JSON = "application/json"


def sse_frame_schema(
    events: dict[str, dict[str, Any]],
    *,
    with_id: bool,
    unnumbered: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One Server-Sent Events frame, as OpenAPI 3.2 and schemathesis read a stream: an
    object of `event`, `data`, `id` and `retry`, whose `data` is JSON with a schema per
    event name. `events` carry an `id:` when `with_id`; `unnumbered` ones never do."""

    def variant(name: str, schema: dict[str, Any], numbered: bool) -> dict[str, Any]:
        return {
            "properties": {
                "event": {"const": name},
                "data": {"contentMediaType": JSON, "contentSchema": schema},
            },
            **({"required": ["id"]} if numbered else {}),
        }

    unnumbered = unnumbered or {}
    variants = [variant(name, schema, with_id) for name, schema in events.items()]
    variants += [variant(name, schema, False) for name, schema in unnumbered.items()]
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"enum": [*events, *unnumbered]},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer", "minimum": 0},
        },
        "oneOf": variants,
    }


def inlined(schema: Any, definitions: dict[str, Any]) -> Any:
    """`schema` with each `$ref` to `definitions` replaced by the definition (an SSE
    frame's `data` schema stands alone; event models are not recursive)."""
    if isinstance(schema, list):
        return [inlined(item, definitions) for item in schema]
    if not isinstance(schema, dict):
        return schema
    reference = schema.get("$ref", "")
    if reference.startswith("#/$defs/"):
        return inlined(definitions[reference.removeprefix("#/$defs/")], definitions)
    return {key: inlined(value, definitions) for key, value in schema.items()}


def task_event_schemas() -> dict[str, dict[str, Any]]:
    """Each task event's `data` by its `event` name: the event's model without `type`."""
    union = get_args(TaskEvent)[0]
    schemas = {}
    for model in get_args(union):
        schema = model.model_json_schema()
        schema = inlined(schema, schema.pop("$defs", {}))
        schema["properties"].pop("type", None)
        schema["required"] = [name for name in schema.get("required", []) if name != "type"]
        schemas[model.model_fields["type"].default.value] = schema
    return schemas


class RawBody:
    """A non-JSON response body, for `document_response` only (it is never validated).

    `other_media_types` are further media types the same body may come as; `headers`
    names response headers (with what they carry); `json_alternative` is the model of the
    JSON body the same status answers otherwise (e.g. without `stream`).
    """

    media_type: ClassVar[str]
    other_media_types: ClassVar[tuple[str, ...]] = ()
    schema: ClassVar[dict[str, Any]] = {"type": "string", "format": "binary"}
    headers: ClassVar[dict[str, str]] = {}
    json_alternative: ClassVar[type | None] = None


class JpegImage(RawBody):
    """The image, as image/jpeg."""

    media_type = "image/jpeg"


class UploadedImage(RawBody):
    """The image as it was uploaded: PNG, JPEG, GIF or WebP."""

    media_type = "image/png"
    other_media_types = ("image/jpeg", "image/gif", "image/webp")


class EventStream(RawBody):
    """A text/event-stream of `token`, `reference`, `usage` and one terminal event
    (`done`, `error` or `cancelled`), each frame with an `id:`; the schema is one frame's."""

    media_type = "text/event-stream"
    schema = sse_frame_schema(task_event_schemas(), with_id=True)


class NewTaskEventStream(EventStream):
    """With `stream: true`: the new task's text/event-stream, opening with `event: task`
    (`{"task_id"}`, no `id:`), then the task's events as on GET
    /api/v1/tasks/{task_id}/stream, where it can be resumed."""

    # The opening frame of backend/streams/sse.py.
    schema = sse_frame_schema(
        task_event_schemas(),
        with_id=True,
        unnumbered={
            "task": {
                "type": "object",
                "required": ["task_id"],
                "properties": {"task_id": {"type": "string"}},
            }
        },
    )
    headers = {"X-Task-ID": "The new task's id, to cancel it or resume its stream"}


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
            return self.build_raw_response_object(model)
        return super().build_response_object(model, headers_model)

    def build_raw_response_object(
        self, model: type[RawBody]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        response: dict[str, Any] = {"content": {}, "description": inspect.getdoc(model) or ""}
        components: dict[str, Any] = {}
        if model.json_alternative is not None:
            response, components = super().build_response_object(model.json_alternative, None)
            response["description"] = inspect.getdoc(model) or ""
        for media_type in (model.media_type, *model.other_media_types):
            response["content"][media_type] = {"schema": dict(model.schema)}
        if model.headers:
            response["headers"] = {
                name: {"description": meaning, "schema": {"type": "string"}}
                for name, meaning in model.headers.items()
            }
        return response, components

    def build_request_body(self, model: type, source: DataSource) -> tuple[dict, dict]:
        """Every documented body is required: a request without it is a 422 (quart-schema
        leaves `required` out, which says the body may be omitted)."""
        request_body, components = super().build_request_body(model, source)
        request_body["required"] = True
        return request_body, components

    def build_paths(self, rule: Rule) -> tuple[dict, dict]:
        """Quart-schema's operations, each with the error responses it can give."""
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        add_error_responses(
            (operation for operations in paths.values() for operation in operations.values()),
            view,
        )
        components.update(error_components())
        return paths, components
