"""QAnything's RAG server API (`/api/qanything/...`) on the wire.

Field names follow QAnything's server README (`user_id`, `kb_id`, `file_ids`, `faqs`,
`code`/`msg`). Ids are Sluice's: `kb_id` is a dataset id, a file id a document id.
`user_id` is required (QAnything's 2002 when missing) and must name the caller, by user
id or username (2005 otherwise); the caller is who the bearer credential says.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from quart_schema.pydantic import File

from schemas.chunks import MAX_IDS, Content, FaqPair
from schemas.common import RequestBody
from schemas.documents import DuplicateMode, SkippedFile, StatusBatch
from schemas.ids import PublicId
from schemas.retrieval import MAX_PAGE_SIZE, QUESTION_MAX_CHARS

MAX_FAQS = 1000
SUCCESS = 200


class QAnythingRequest(RequestBody):
    model_config = ConfigDict(extra="ignore")

    user_id: str | None = Field(None, max_length=255, description="Your user id or username")


class DeleteKnowledgeBase(QAnythingRequest):
    kb_id: str = Field(max_length=255, description="The dataset to delete (or delete from)")
    file_ids: list[PublicId] | None = Field(
        None, max_length=MAX_IDS, description="Only these documents; absent: the whole dataset"
    )


class FilesStatusRequest(QAnythingRequest):
    kb_id: str = Field(max_length=255)
    file_ids: list[PublicId] = Field(min_length=1, max_length=MAX_IDS)


class RagSearchRequest(QAnythingRequest):
    kb_ids: list[str] = Field(default_factory=list, max_length=MAX_IDS)
    kb_id: str | None = Field(None, max_length=255, description="One dataset (the README's curl)")
    question: str = Field(max_length=QUESTION_MAX_CHARS)
    top_k: int = Field(30, ge=1, le=MAX_PAGE_SIZE, description="Most documents returned")

    @model_validator(mode="after")
    def one_list(self) -> RagSearchRequest:
        if self.kb_id and self.kb_id not in self.kb_ids:
            self.kb_ids = [*self.kb_ids, self.kb_id]
        if not self.kb_ids:
            raise ValueError("Name the knowledge bases to search in kb_ids")
        return self


class UploadFaqs(QAnythingRequest):
    kb_id: str = Field(max_length=255)
    faqs: list[FaqPair] = Field(min_length=1, max_length=MAX_FAQS)


class ChunkEmbedding(QAnythingRequest):
    kb_id: str = Field(max_length=255)
    file_id: str | None = Field(
        None, max_length=255, description="Ignored: Sluice names the document (see the reply)"
    )
    file_name: str | None = Field(None, max_length=255, description="Default: <file_id>.txt")
    chunk_datas: list[Content] = Field(min_length=1, max_length=MAX_IDS)


class QAnythingReply(BaseModel):
    code: int = Field(SUCCESS, description="200 on success")
    msg: str


class FilesStatusReply(QAnythingReply):
    data: StatusBatch


class RetrievalDocument(BaseModel):
    metadata: dict[str, Any] = Field(
        description="user_id, kb_id, file_id, file_name, chunk_id, score, retrieval_query"
    )
    page_content: str


class RagSearchReply(QAnythingReply):
    question: str
    retrieval_documents: list[RetrievalDocument]


class FaqFileStatus(BaseModel):
    file_id: str
    file_name: str
    status: str = Field(description="gray: queued for parsing")
    length: int = Field(description="Pairs in the FAQ document")
    timestamp: str = Field(description="YYYYMMDDHHMM (UTC)")


class UploadFaqsReply(QAnythingReply):
    file_status: dict[str, Any] = Field(default_factory=dict)
    data: list[FaqFileStatus]


class FileEntry(BaseModel):
    file_id: str
    file_name: str
    status: str = Field(description="gray: waiting or parsing; green: done; red: failed")
    bytes: int
    timestamp: str = Field(description="YYYYMMDDHHMM (UTC)")


class ChunkEmbeddingReply(QAnythingReply):
    data: FileEntry


class DocumentParserEmbeddingForm(BaseModel):
    """multipart/form-data: the text fields first (the knowledge base is needed before the
    files are stored), then one `files` part per file."""

    user_id: str
    kb_id: str
    file_ids: str | None = Field(None, description="Ignored: Sluice names the documents")
    mode: DuplicateMode | None = Field(
        None, description="soft (default): skip a name the knowledge base has; strong: upload"
    )
    files: list[File]


class DocumentParserEmbeddingReply(QAnythingReply):
    data: list[FileEntry]
    skipped: list[SkippedFile] = Field(default_factory=list, description="Files not stored")


class DocumentParserForm(BaseModel):
    """multipart/form-data: `user_id` (and `kb_id`, optional) fields and one `file` part."""

    user_id: str
    kb_id: str | None = Field(
        None, description="A knowledge base of yours: its chunk method and settings are used"
    )
    file: File


class ParserMetadata(BaseModel):
    user_id: str
    kb_id: str | None = Field(description="As sent; null when none was")
    file_id: str = Field(description="A fresh id: the file is not stored")
    file_name: str
    chunk_id: int = Field(description="The chunk's index, from 0")
    file_path: str = Field(description="The file name: the file is not stored")
    faq_dict: dict[str, str] = Field(description="question and answer of a Q/A chunk, else {}")


class ParserDocument(BaseModel):
    metadata: ParserMetadata
    page_content: str


class DocumentParserReply(QAnythingReply):
    parser_documents: list[ParserDocument]
