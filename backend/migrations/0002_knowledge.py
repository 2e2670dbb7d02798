from tortoise import migrations
from tortoise.migrations import operations as ops
from backend.models.ids import new_id
from backend.models.knowledge import DocumentRun, Permission
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Dataset",
            fields=[
                (
                    "id",
                    fields.CharField(
                        primary_key=True, default=new_id, unique=True, db_index=True, max_length=32
                    ),
                ),
                (
                    "owner",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="owner_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="datasets",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=128)),
                ("name_key", fields.CharField(max_length=128)),
                ("avatar", fields.TextField(null=True, unique=False)),
                ("description", fields.TextField(null=True, unique=False)),
                ("embedding_model", fields.CharField(max_length=255)),
                ("embedding_dimension", fields.IntField(null=True)),
                (
                    "permission",
                    fields.CharEnumField(
                        default=Permission.ME,
                        description="ME: me\nTEAM: team",
                        enum_type=Permission,
                        max_length=16,
                    ),
                ),
                ("chunk_method", fields.CharField(default="naive", max_length=32)),
                (
                    "parser_config",
                    fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads),
                ),
                ("language", fields.CharField(default="English", max_length=32)),
                ("pagerank", fields.IntField(default=0)),
                ("similarity_threshold", fields.FloatField(default=0.2)),
                ("vector_similarity_weight", fields.FloatField(default=0.3)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "datasets",
                "app": "models",
                "unique_together": (("owner", "name_key"),),
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Document",
            fields=[
                (
                    "id",
                    fields.CharField(
                        primary_key=True, default=new_id, unique=True, db_index=True, max_length=32
                    ),
                ),
                (
                    "dataset",
                    fields.ForeignKeyField(
                        "models.Dataset",
                        source_field="dataset_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="documents",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "owner",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="owner_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="documents",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=255)),
                ("location", fields.CharField(max_length=512)),
                ("size", fields.BigIntField(default=0)),
                ("type", fields.CharField(max_length=16)),
                ("suffix", fields.CharField(max_length=16)),
                ("content_type", fields.CharField(max_length=128)),
                ("chunk_method", fields.CharField(default="naive", max_length=32)),
                (
                    "parser_config",
                    fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads),
                ),
                (
                    "run",
                    fields.CharEnumField(
                        default=DocumentRun.UNSTART,
                        description="UNSTART: UNSTART\nRUNNING: RUNNING\nCANCEL: CANCEL\nDONE: DONE\nFAIL: FAIL",
                        enum_type=DocumentRun,
                        max_length=16,
                    ),
                ),
                ("run_id", fields.CharField(null=True, max_length=32)),
                ("progress", fields.FloatField(default=0.0)),
                ("progress_msg", fields.TextField(default="", unique=False)),
                ("chunk_count", fields.IntField(default=0)),
                ("token_count", fields.BigIntField(default=0)),
                ("content_length", fields.BigIntField(default=0)),
                (
                    "process_begin_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("process_duration", fields.FloatField(default=0.0)),
                ("enabled", fields.BooleanField(default=True)),
                ("meta_fields", fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "documents",
                "app": "models",
                "indexes": [
                    Index(fields=["dataset_id", "name"]),
                    Index(fields=["dataset_id", "created_at"]),
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
    ]
