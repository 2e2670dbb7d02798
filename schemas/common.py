"""Small shared request shapes, and the base of every JSON request body."""

import copy
from typing import Any

from pydantic import BaseModel, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import CoreSchema, PydanticCustomError

# Pages past the data are empty, not errors; this bound only keeps the SQL OFFSET
# ((page - 1) * page_size) a number every database accepts, instead of a 500.
MAX_PAGE = 1_000_000


class Pagination(BaseModel):
    """Every paginated list's `page` and `page_size`; lists with another default or
    maximum page size override `page_size` only."""

    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(30, ge=1, le=1000)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


class SchemaSays:
    """Adds keywords to a type's JSON schema: a rule a validator checks (with its own,
    readable message), said in the OpenAPI document too, where a schema can say it.
    `Annotated[list[str], AfterValidator(no_duplicates), SchemaSays(uniqueItems=True)]`."""

    def __init__(self, **keywords: Any) -> None:
        self.keywords = tuple(keywords.items())

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        schema = handler(core_schema)
        schema.update(self.keywords)
        return schema


def exactly_one_of(**fields: dict[str, Any]) -> dict[str, Any]:
    """JSON schema keywords for "exactly one of these fields, not null": each field's
    branch requires it with its non-null schema (a model validator checks the same)."""
    return {
        "oneOf": [
            {"required": [name], "properties": {name: schema}} for name, schema in fields.items()
        ]
    }


def json_number(value: Any) -> Any:
    """A number, never a boolean: pydantic's lax mode reads `false` as 0. (Numeric text
    stays accepted: SwiftChat sends an image's `width` as "1024".)"""
    if isinstance(value, bool):
        raise PydanticCustomError("json_number", "Input should be a number, not a boolean")
    return value


def json_scalars(schema: Any) -> Any:
    """`schema` (a pydantic core schema) with booleans strict and numbers refusing them."""
    if isinstance(schema, list):
        for item in schema:
            json_scalars(item)
    elif isinstance(schema, dict):
        for value in schema.values():
            json_scalars(value)
        if schema.get("type") == "bool":
            schema["strict"] = True
        elif schema.get("type") in ("int", "float"):
            inner = dict(schema)
            schema.clear()
            schema.update(
                type="function-before",
                function={"type": "no-info", "function": json_number},
                schema=inner,
            )
    return schema


class RequestBody(BaseModel):
    """Every JSON request body, and each model it nests, derives from this: its booleans
    are JSON booleans (`0`, `"true"` are 422s) and its numbers are never booleans
    (`false` is a 422), where pydantic's lax mode would guess. Query strings and forms
    are text and keep their lax models."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return json_scalars(copy.deepcopy(handler(source)))
