"""Small shared request shapes."""

from typing import Any

from pydantic import BaseModel, Field, GetJsonSchemaHandler
from pydantic_core import CoreSchema

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
