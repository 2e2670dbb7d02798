"""Chunks, parsing requests and FAQ imports on the wire.

Shapes follow RAGFlow's current HTTP API (`/api/v1/datasets/{id}/chunks` to start and
stop parsing; `/api/v1/datasets/{id}/documents/{doc_id}/chunks[/{chunk_id}]` for a
document's chunks) so RAGFlow's SDK works unchanged: it sends `id=""` and
`keywords=""` when listing and `tag_kwd: []` when adding, all accepted here. The FAQ
import follows QAnything's `upload_faqs` (up to 1,000 question/answer pairs a call).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from schemas.common import Pagination, RequestBody
from schemas.documents import DocumentOut
from schemas.ids import PublicId, UniqueIds

MAX_IDS = 1000
MAX_FAQS = 1000
CONTENT_MAX_CHARS = 65535
KEYWORD_MAX_CHARS = 255
QUESTION_MAX_CHARS = 2048
MAX_LIST_ITEMS = 64


def blank_as_none(value: Any) -> Any:
    """RAGFlow's SDK sends `id=""` when no chunk id is asked for."""
    return None if isinstance(value, str) and not value.strip() else value


class ParseRequest(RequestBody):
    """The documents to start (POST) or stop (DELETE) parsing."""

    model_config = ConfigDict(extra="forbid")

    document_ids: UniqueIds = Field(min_length=1, max_length=MAX_IDS)


Keyword = Annotated[str, Field(min_length=1, max_length=KEYWORD_MAX_CHARS)]
Question = Annotated[str, Field(min_length=1, max_length=QUESTION_MAX_CHARS)]
Content = Annotated[str, Field(min_length=1, max_length=CONTENT_MAX_CHARS)]


def no_tags(tags: list[str] | None) -> list[str] | None:
    if tags:
        raise ValueError("tags (tag_kwd) are not supported yet: send [] or leave it out")
    return tags


class ChunkFields(RequestBody):
    model_config = ConfigDict(extra="forbid")

    @field_validator("content", check_fields=False)
    @classmethod
    def has_text(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("content must not be blank")
        return value

    _no_tags = field_validator("tag_kwd", check_fields=False)(no_tags)


class ChunkCreate(ChunkFields):
    """A chunk added by hand: searchable by its words at once, by meaning once embedded
    (by its questions when it has some, else by its content)."""

    content: Content
    important_keywords: list[Keyword] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    questions: list[Question] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    tag_kwd: list[str] = Field(default_factory=list, description="Accepted empty (RAGFlow SDK)")


class ChunkUpdate(ChunkFields):
    """The fields sent change; new content or questions are embedded again."""

    content: Content | None = None
    important_keywords: list[Keyword] | None = Field(None, max_length=MAX_LIST_ITEMS)
    questions: list[Question] | None = Field(None, max_length=MAX_LIST_ITEMS)
    available: StrictBool | None = Field(None, description="false hides the chunk from searches")
    tag_kwd: list[str] | None = Field(None, description="Accepted empty (RAGFlow SDK)")


class ChunkDelete(RequestBody):
    """RAGFlow's chunk delete: `chunk_ids` deletes those (all or nothing; unknown ids are
    404; `[]` deletes nothing); without ids, `delete_all: true` deletes every chunk of the
    document. A body naming neither (`{}`, `{"chunk_ids": null}`) is a 422, never a
    silent no-op or a wipe."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["chunk_ids"], "properties": {"chunk_ids": {"type": "array"}}},
                {"required": ["delete_all"], "properties": {"delete_all": {"const": True}}},
            ]
        },
    )

    chunk_ids: UniqueIds | None = Field(None, max_length=MAX_IDS)
    delete_all: StrictBool = Field(
        False, description="true (and no chunk_ids): delete every chunk of the document"
    )

    @model_validator(mode="after")
    def something_named(self) -> ChunkDelete:
        if self.chunk_ids is None and not self.delete_all:
            raise ValueError(
                "Name what to delete: send 'chunk_ids' (a list of ids) or 'delete_all': true"
            )
        return self


class ChunkListQuery(Pagination):
    keywords: Annotated[str | None, BeforeValidator(blank_as_none)] = Field(
        None, max_length=255, description="Chunks containing every word of it"
    )
    id: Annotated[PublicId | None, BeforeValidator(blank_as_none)] = Field(
        None, description="Just this chunk"
    )


class ChunkOut(BaseModel):
    id: str
    content: str
    document_id: str
    docnm_kwd: str = Field(description="The document's name")
    dataset_id: str
    important_keywords: list[str]
    questions: list[str]
    tag_kwd: list[str] = Field(default_factory=list)
    image_id: str = ""
    available: bool
    positions: list[list[int]] = Field(description="[page, left, right, top, bottom] boxes")
    token_count: int
    embedded: bool = Field(description="Whether the chunk has its vector yet")
    create_time: str = Field(description="YYYY-MM-DD HH:MM:SS (UTC), as RAGFlow")
    create_timestamp: float = Field(description="Seconds since the epoch")


class ChunkPage(BaseModel):
    """RAGFlow's list: the page of chunks, the document they belong to, the match count."""

    chunks: list[ChunkOut]
    doc: DocumentOut
    total: int


class ChunkCreated(BaseModel):
    chunk: ChunkOut


class FaqPair(RequestBody):
    model_config = ConfigDict(extra="forbid")

    question: Question
    answer: Content


class FaqImport(RequestBody):
    """QAnything's upload_faqs: question/answer pairs become one FAQ document (a CSV of
    the pairs, chunk method `qa`), one chunk per pair, matched on the question."""

    model_config = ConfigDict(extra="forbid")

    faqs: list[FaqPair] = Field(min_length=1, max_length=MAX_FAQS)


class FaqImported(BaseModel):
    document: DocumentOut
    pairs: int = Field(description="Pairs imported (a repeated question counts once)")
