"""Knowledge bases: datasets and the shapes their documents share, on the wire.

Field names, defaults and rules follow RAGFlow's current HTTP API (the datasets of
`/api/v1/datasets`), so RAGFlow's Python SDK and clients work against Sluice unchanged.
Request bodies refuse unknown fields, as RAGFlow's do. Documents are in
schemas/documents.py.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from schemas.chats import ListQuery
from schemas.common import RequestBody, SchemaSays
from schemas.ids import PublicId, UniqueIds

NAME_MAX_CHARS = 128
TEXT_MAX_CHARS = 65535
AVATAR_TYPES = ("image/jpeg", "image/png")
MAX_DELETE_IDS = 1000


class ChunkMethod(StrEnum):
    """How documents are cut into chunks: `naive` (general), `qa` (question/answer
    files), `manual` (sections by headings), `one` (the whole document, one chunk)."""

    NAIVE = "naive"
    QA = "qa"
    MANUAL = "manual"
    ONE = "one"


class Permission(StrEnum):
    ME = "me"
    TEAM = "team"


def basic_multilingual_plane(text: str) -> str:
    if any(ord(char) > 0xFFFF for char in text):
        raise ValueError("must use Basic Multilingual Plane characters only (no emoji)")
    return text


def data_url_image(value: str | None) -> str | None:
    """RAGFlow's avatar rule: empty, or `data:image/png|jpeg;base64,<data>`."""
    if not value:
        return value
    prefix, comma, _ = value.partition(",")
    if not comma:
        raise ValueError("missing MIME prefix: expected data:<mime>;base64,<data>")
    if not prefix.startswith("data:"):
        raise ValueError("invalid MIME prefix: it must start with 'data:'")
    if prefix[5:].split(";")[0] not in AVATAR_TYPES:
        raise ValueError(f"unsupported image type: send one of {', '.join(AVATAR_TYPES)}")
    return value


# The same rule as a schema says it: no character past U+FFFF. Written without
# surrogates' code points, it reads right as ECMA-262 (UTF-16, with or without the `u`
# flag, where an astral character is a surrogate pair) and as a Python regex.
BMP_PATTERN = "^[\\u0000-\\uD7FF\\uE000-\\uFFFF]*$"
DatasetName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_CHARS),
    AfterValidator(basic_multilingual_plane),
    SchemaSays(pattern=BMP_PATTERN),
]
Avatar = Annotated[
    str | None,
    Field(max_length=TEXT_MAX_CHARS, description="Base64 data URL of a PNG or JPEG image"),
    AfterValidator(data_url_image),
]
Description = Annotated[str | None, Field(max_length=TEXT_MAX_CHARS)]
EmbeddingModel = Annotated[
    str | None,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    Field(
        description="An embedding model this server serves (RAGFlow's <model_name>@<factory>)",
        examples=["multilingual-e5-small@local"],
    ),
]
Ratio = Annotated[float, Field(ge=0, le=1)]


class ParserConfig(RequestBody):
    """Parser settings. The fields below are checked; any other RAGFlow field (raptor,
    graphrag, pages, ...) is accepted and stored as sent. Omitted fields take the chunk
    method's defaults."""

    model_config = ConfigDict(extra="allow")

    chunk_token_num: int | None = Field(None, ge=1, le=2048)
    delimiter: str | None = Field(None, min_length=1, max_length=256)
    html4excel: StrictBool | None = None
    layout_recognize: str | StrictBool | None = None
    auto_keywords: int | None = Field(None, ge=0, le=32)
    auto_questions: int | None = Field(None, ge=0, le=10)
    task_page_size: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def bounded(self) -> ParserConfig:
        if len(self.model_dump_json()) > TEXT_MAX_CHARS:
            raise ValueError(f"parser_config must be at most {TEXT_MAX_CHARS} characters of JSON")
        return self

    def given(self) -> dict[str, Any]:
        """The fields the client sent, as JSON values."""
        return self.model_dump(mode="json", exclude_unset=True)


def empty_as_none(value: Any) -> Any:
    """RAGFlow treats `parser_config: {}` as not given."""
    return None if value == {} else value


class DatasetFields(RequestBody):
    model_config = ConfigDict(extra="forbid")

    @field_validator("parser_config", mode="before", check_fields=False)
    @classmethod
    def parser_config_empty(cls, value: Any) -> Any:
        return empty_as_none(value)


class DatasetCreate(DatasetFields):
    name: DatasetName
    avatar: Avatar = None
    description: Description = None
    embedding_model: EmbeddingModel = Field(
        None, description="Omitted: the server's default embedding model"
    )
    permission: Permission = Permission.ME
    chunk_method: ChunkMethod = ChunkMethod.NAIVE
    parser_config: ParserConfig | None = None
    similarity_threshold: Ratio = 0.2
    vector_similarity_weight: Ratio = 0.3


class DatasetUpdate(DatasetFields):
    """The fields sent change; `parser_config` is merged into the stored one. Changing
    `chunk_method` without a `parser_config` resets it to the method's defaults."""

    name: DatasetName | None = None
    avatar: Avatar = None
    description: Description = None
    embedding_model: EmbeddingModel = Field(
        None, description="Only while the dataset has no chunks (chunk_count 0)"
    )
    permission: Permission | None = None
    chunk_method: ChunkMethod | None = None
    parser_config: ParserConfig | None = None
    pagerank: int | None = Field(None, ge=0, le=100)
    similarity_threshold: Ratio | None = None
    vector_similarity_weight: Ratio | None = None


NOTHING_NAMED = "Name what to delete: send 'ids' (a list of ids) or 'delete_all': true"


def as_list(value: Any) -> Any:
    """A query parameter given once arrives as a string; repeated, as a list."""
    return value if isinstance(value, list) else [value]


IdList = Annotated[
    list[PublicId] | None,
    BeforeValidator(as_list),
    Field(max_length=MAX_DELETE_IDS, description="Several ids: repeat the parameter"),
]


class DatasetListQuery(ListQuery):
    """RAGFlow's list filters; the parsing-status counts are always included."""

    name: str | None = Field(None, max_length=NAME_MAX_CHARS, description="Exactly this name")
    ids: IdList = None
    include_parsing_status: bool = False


class DeleteSelection(RequestBody):
    """RAGFlow's batch delete, with nothing implied: `ids` deletes those (all or nothing,
    unknown ids are 404; `[]` deletes nothing); `delete_all: true` (without ids) deletes
    every one. A body that names neither (`{}`, `{"ids": null}`) is a 422: an empty or
    truncated body must never mean "delete everything" (RAGFlow's older servers read it
    so). Booleans are JSON booleans: `delete_all: 1` is a 422 too."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["ids"], "properties": {"ids": {"type": "array"}}},
                {"required": ["delete_all"], "properties": {"delete_all": {"const": True}}},
            ]
        },
    )

    ids: UniqueIds | None = Field(None, max_length=MAX_DELETE_IDS)
    delete_all: StrictBool = Field(
        False, description="true (and no ids): delete every one; needed when `ids` is absent"
    )

    @model_validator(mode="after")
    def something_named(self) -> DeleteSelection:
        if self.ids is None and not self.delete_all:
            raise ValueError(NOTHING_NAMED)
        return self

    @property
    def everything(self) -> bool:
        return self.delete_all and not self.ids


class ParsingStatusCounts(BaseModel):
    unstart_count: int = 0
    running_count: int = 0
    cancel_count: int = 0
    done_count: int = 0
    fail_count: int = 0


class DatasetOut(ParsingStatusCounts):
    id: str
    name: str
    avatar: str | None
    description: str | None
    embedding_model: str
    permission: Permission
    chunk_method: str
    parser_config: dict[str, Any]
    language: str
    pagerank: int
    similarity_threshold: float
    vector_similarity_weight: float
    document_count: int
    chunk_count: int
    token_num: int
    status: str = Field("1", description="RAGFlow's validity flag; always '1'")
    tenant_id: str = Field(description="The owner's user id")
    created_by: str = Field(description="The owner's user id")
    create_time: int = Field(description="Milliseconds since the epoch")
    create_date: str = Field(description="RFC 1123 date, as RAGFlow")
    update_time: int
    update_date: str


class DatasetList(BaseModel):
    """RAGFlow's list envelope: the page in `data`, the match count beside it."""

    code: int = 0
    data: list[DatasetOut]
    total_datasets: int
