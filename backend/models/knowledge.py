"""Knowledge bases: datasets (RAGFlow's knowledge bases) and their documents.

Chunks live in the search store, not here; a document row carries their count. A
dataset's document, chunk and token totals are summed from its documents when read,
so no counter can drift when workers finish documents concurrently.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from backend.models.ids import new_id
from backend.models.timestamps import UpdatedAtField


class DocumentRun(StrEnum):
    """RAGFlow's `run` states of a document's parsing (its TaskStatus "0".."4")."""

    UNSTART = "UNSTART"
    RUNNING = "RUNNING"
    CANCEL = "CANCEL"
    DONE = "DONE"
    FAIL = "FAIL"


class Permission(StrEnum):
    ME = "me"
    TEAM = "team"


class Dataset(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_id)
    owner = fields.ForeignKeyField("models.User", related_name="datasets")
    name = fields.CharField(max_length=128)
    # The name case-folded: RAGFlow's names are unique per owner regardless of case, and
    # a unique index on this column enforces it on every database, race-free.
    name_key = fields.CharField(max_length=128)
    avatar = fields.TextField(null=True)
    description = fields.TextField(null=True)
    embedding_model = fields.CharField(max_length=255)
    # Set by the ingest worker when the first chunks are embedded; fixed after that.
    embedding_dimension = fields.IntField(null=True)
    permission = fields.CharEnumField(Permission, max_length=16, default=Permission.ME)
    chunk_method = fields.CharField(max_length=32, default="naive")
    parser_config = fields.JSONField(default=dict)
    language = fields.CharField(max_length=32, default="English")
    pagerank = fields.IntField(default=0)
    similarity_threshold = fields.FloatField(default=0.2)
    vector_similarity_weight = fields.FloatField(default=0.3)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = UpdatedAtField()

    class Meta:
        table = "datasets"
        unique_together = (("owner", "name_key"),)


class Document(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_id)
    dataset = fields.ForeignKeyField(
        "models.Dataset", related_name="documents", on_delete=fields.CASCADE
    )
    # Denormalised from the dataset: every query is filtered by owner first.
    owner = fields.ForeignKeyField("models.User", related_name="documents")
    name = fields.CharField(max_length=255)
    # The file's key in the file storage (never derived from the client's file name).
    location = fields.CharField(max_length=512)
    size = fields.BigIntField(default=0)
    # RAGFlow's file type: "pdf" for PDFs, "visual" for images, "doc" for other documents.
    type = fields.CharField(max_length=16)
    # The detected format (backend/knowledge/formats.py), e.g. "pdf", "docx", "md".
    suffix = fields.CharField(max_length=16)
    content_type = fields.CharField(max_length=128)
    chunk_method = fields.CharField(max_length=32, default="naive")
    parser_config = fields.JSONField(default=dict)
    run = fields.CharEnumField(DocumentRun, max_length=16, default=DocumentRun.UNSTART)
    # The parse run a worker job belongs to; a job whose run id is no longer the
    # document's (cancelled, restarted, deleted) stops and cleans up after itself.
    run_id = fields.CharField(max_length=32, null=True)
    progress = fields.FloatField(default=0.0)
    progress_msg = fields.TextField(default="")
    chunk_count = fields.IntField(default=0)
    token_count = fields.BigIntField(default=0)
    # Characters of parsed text (QAnything's content_length).
    content_length = fields.BigIntField(default=0)
    process_begin_at = fields.DatetimeField(null=True)
    process_duration = fields.FloatField(default=0.0)
    enabled = fields.BooleanField(default=True)
    meta_fields = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = UpdatedAtField()

    class Meta:
        table = "documents"
        # ("run",): ingest recovery's sweep of the running documents (migration 0005).
        indexes = (("dataset_id", "name"), ("dataset_id", "created_at"), ("run",))
