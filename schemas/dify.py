"""Dify's external knowledge API on the wire (`POST /api/v1/dify/retrieval`).

Dify calls `{endpoint}/retrieval` with the API key it was given as a bearer token and
reads `records`; its documented error codes (1001 malformed Authorization header, 1002
authorization failed, 2001 unknown knowledge) are added to Sluice's error envelope as
`error_code` / `error_msg` by the route module. `knowledge_id` is a Sluice dataset id.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.common import RequestBody
from schemas.retrieval import MAX_PAGE_SIZE, QUESTION_MAX_CHARS, unsupported


class DifyRetrievalSetting(RequestBody):
    top_k: int = Field(ge=1, le=MAX_PAGE_SIZE, description="Most records returned")
    score_threshold: float = Field(
        0.0, ge=0, le=1, description="Records below this score are dropped (0: none)"
    )


class DifyMetadataCondition(RequestBody):
    logical_operator: str = "and"
    conditions: list[dict[str, Any]] = Field(default_factory=list)


class DifyRetrievalRequest(RequestBody):
    model_config = ConfigDict(extra="ignore")

    knowledge_id: str = Field(
        max_length=255, description="The id of one of your datasets (Dify's External Knowledge ID)"
    )
    query: str = Field(max_length=QUESTION_MAX_CHARS, description="What to search for")
    retrieval_setting: DifyRetrievalSetting
    metadata_condition: DifyMetadataCondition | None = Field(
        None, description="Accepted without conditions: documents carry no metadata to filter"
    )

    @model_validator(mode="after")
    def check(self) -> DifyRetrievalRequest:
        if self.metadata_condition and self.metadata_condition.conditions:
            raise unsupported("metadata_condition", "documents carry no metadata to filter on")
        return self


class DifyRecord(BaseModel):
    content: str
    score: float = Field(description="The fused similarity (or the reranker's score), 0..1")
    title: str = Field(description="The document's name")
    metadata: dict[str, Any] = Field(
        description="document_id, dataset_id, chunk_id and the two legs' similarities"
    )


class DifyRetrievalResponse(BaseModel):
    records: list[DifyRecord]
