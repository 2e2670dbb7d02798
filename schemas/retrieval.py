"""Retrieval (RAGFlow's `POST /api/v1/retrieval`) on the wire, and the service's result.

Field names, defaults and the response shape follow RAGFlow's current HTTP API, so its
SDK's `rag.retrieve(...)` works unchanged. That SDK always sends `rerank_id`,
`cross_languages` and `metadata_condition` (null when unset) and, in newer versions,
`use_kg` / `toc_enhance` (false): all accepted at their "off" values. Their "on" values
need things Sluice does not have (a chat model translating the question, document
metadata filters, a knowledge graph, tables of contents) and are refused with a 422
saying so, rather than silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

from schemas.chunks import MAX_IDS, blank_as_none
from schemas.common import MAX_PAGE, RequestBody, SchemaSays
from schemas.ids import UniqueIds

QUESTION_MAX_CHARS = 8192
MAX_TOP_K = 8192
MAX_PAGE_SIZE = 1024


def unsupported(name: str, why: str) -> ValueError:
    return ValueError(f"{name} is not supported: {why}. Leave it out (or send its default).")


class RetrievalRequest(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        # What `check` enforces, as a schema says it: some datasets or some documents.
        json_schema_extra={
            "anyOf": [
                {"required": ["dataset_ids"], "properties": {"dataset_ids": {"minItems": 1}}},
                {"required": ["document_ids"], "properties": {"document_ids": {"minItems": 1}}},
            ]
        },
    )

    question: str = Field(
        "", max_length=QUESTION_MAX_CHARS, description="What to search for; empty finds nothing"
    )
    dataset_ids: UniqueIds = Field(
        default_factory=list,
        max_length=MAX_IDS,
        description="Datasets to search (yours); may be left out when document_ids are given",
    )
    document_ids: UniqueIds = Field(
        default_factory=list,
        max_length=MAX_IDS,
        description="Only these documents (of the datasets named, or of yours)",
    )
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(30, ge=1, le=MAX_PAGE_SIZE)
    similarity_threshold: float = Field(
        0.2, ge=0, le=1, description="Chunks whose fused similarity is below it are dropped"
    )
    vector_similarity_weight: float = Field(
        0.3,
        ge=0,
        le=1,
        description="The vector leg's weight in the fused similarity (the rest is the "
        "keyword leg's); the default 0.3 lets Sluice weigh the legs per query "
        "(docs/retrieval.md)",
    )
    top_k: int = Field(1024, ge=1, le=MAX_TOP_K, description="Candidates taken from each leg")
    rerank_id: Annotated[str | None, BeforeValidator(blank_as_none)] = Field(
        None, max_length=255, description="A rerank model id configured in RERANK_MODELS"
    )
    keyword: StrictBool = Field(
        False, description="Only chunks containing at least one of the question's words"
    )
    highlight: StrictBool = Field(False, description="Add `highlight`: the content with <em> marks")
    cross_languages: list[str] | None = Field(None, description="Accepted empty (RAGFlow SDK)")
    metadata_condition: dict[str, Any] | None = Field(
        None, description="Accepted empty (RAGFlow SDK)"
    )
    use_kg: Annotated[StrictBool, SchemaSays(const=False)] = Field(
        False, description="Accepted false (RAGFlow SDK)"
    )
    toc_enhance: Annotated[StrictBool, SchemaSays(const=False)] = Field(
        False, description="Accepted false (RAGFlow SDK)"
    )

    @model_validator(mode="after")
    def check(self) -> RetrievalRequest:
        if not self.dataset_ids and not self.document_ids:
            raise ValueError(
                "Name the datasets to search in dataset_ids (or the documents in document_ids)"
            )
        if self.cross_languages:
            raise unsupported("cross_languages", "questions are not translated")
        if self.metadata_condition and self.metadata_condition.get("conditions"):
            raise unsupported("metadata_condition", "filter by document_ids instead")
        if self.use_kg:
            raise unsupported("use_kg", "there is no knowledge graph")
        if self.toc_enhance:
            raise unsupported("toc_enhance", "tables of contents are not extracted")
        return self


class RetrievedChunk(BaseModel):
    """One chunk found, with RAGFlow's retrieval field names (`document_keyword` is the
    document's name; `dataset_id` is what RAGFlow's SDK reads, RAGFlow's `kb_id`).
    `document_name` repeats the name for the SDK versions that read it instead."""

    id: str
    content: str
    document_id: str
    document_keyword: str = Field(description="The document's name")
    document_name: str = Field(description="The document's name (newer RAGFlow SDKs)")
    dataset_id: str
    important_keywords: list[str]
    questions: list[str]
    tag_kwd: list[str] = Field(default_factory=list)
    image_id: str = ""
    positions: list[list[int]] = Field(description="[page, left, right, top, bottom] boxes")
    similarity: float = Field(description="The fused similarity, or the reranker's score")
    vector_similarity: float = Field(description="Cosine to the question, 0..1")
    term_similarity: float = Field(description="Keyword match, 0..1")
    highlight: str | None = Field(
        None, description="When asked: the content, HTML-escaped, matched words in <em>"
    )


class DocAgg(BaseModel):
    doc_name: str
    doc_id: str
    count: int = Field(description="Chunks of this document over all pages")


class RetrievalResult(BaseModel):
    chunks: list[RetrievedChunk]
    doc_aggs: list[DocAgg] = Field(description="Documents found, most chunks first")
    total: int = Field(description="Chunks found over all pages")
