from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from backend.models.chats import Role
from backend.models.credits import CreditReason, ReservationState
from backend.models.ids import new_id
from backend.models.tasks import TaskState
from backend.models.users import Level, LoginKind
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="AppVersion",
            fields=[
                (
                    "platform",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32),
                ),
                ("version", fields.CharField(max_length=32)),
                ("url", fields.CharField(default="", max_length=1024)),
                ("notes", fields.TextField(default="", unique=False)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={"table": "app_versions", "app": "models", "pk_attr": "platform"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="User",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("username", fields.CharField(unique=True, max_length=64)),
                ("password_hash", fields.CharField(null=True, max_length=255)),
                ("nickname", fields.CharField(default="", max_length=64)),
                ("email", fields.CharField(null=True, max_length=255)),
                ("level", fields.IntField(default=Level.USER)),
                ("disabled", fields.BooleanField(default=False)),
                ("credits", fields.BigIntField(default=0)),
                ("wechat_openid", fields.CharField(null=True, unique=True, max_length=128)),
                ("wechat_unionid", fields.CharField(null=True, max_length=128)),
                (
                    "avatar_updated_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={"table": "users", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ApiKey",
            fields=[
                (
                    "id",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="api_keys",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=128)),
                ("prefix", fields.CharField(max_length=16)),
                ("key_hash", fields.CharField(unique=True, max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "last_used_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("revoked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={"table": "api_keys", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Assistant",
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
                        related_name="assistants",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=255)),
                ("avatar", fields.TextField(default="", unique=False)),
                ("description", fields.TextField(default="", unique=False)),
                (
                    "llm",
                    fields.JSONField(
                        default=dict,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "prompt",
                    fields.JSONField(
                        default=dict,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "preset_messages",
                    fields.JSONField(
                        default=list,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "dataset_ids",
                    fields.JSONField(
                        default=list,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("public", fields.BooleanField(default=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={"table": "assistants", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ChatSession",
            fields=[
                (
                    "id",
                    fields.CharField(
                        primary_key=True, default=new_id, unique=True, db_index=True, max_length=32
                    ),
                ),
                (
                    "assistant",
                    fields.ForeignKeyField(
                        "models.Assistant",
                        source_field="assistant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="sessions",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="chat_sessions",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(default="New session", max_length=255)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={"table": "chat_sessions", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="CreditEntry",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="credit_entries",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("delta", fields.BigIntField()),
                (
                    "reason",
                    fields.CharEnumField(
                        description="SIGNUP: signup\nREDEEM: redeem\nRESERVE: reserve\nRELEASE: release\nADMIN: admin",
                        enum_type=CreditReason,
                        max_length=16,
                    ),
                ),
                ("balance_after", fields.BigIntField()),
                ("task_id", fields.CharField(null=True, max_length=32)),
                ("code", fields.CharField(null=True, max_length=64)),
                ("note", fields.CharField(null=True, max_length=255)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={"table": "credit_entries", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="CreditReservation",
            fields=[
                (
                    "id",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="reservations",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("amount", fields.BigIntField()),
                ("charged", fields.BigIntField(null=True)),
                (
                    "state",
                    fields.CharEnumField(
                        default=ReservationState.RESERVED,
                        description="RESERVED: reserved\nSETTLED: settled\nRELEASED: released",
                        enum_type=ReservationState,
                        max_length=16,
                    ),
                ),
                ("task_id", fields.CharField(null=True, max_length=32)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "finished_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "credit_reservations",
                "app": "models",
                "pk_attr": "id",
                "table_description": "Credits held for a piece of work until it settles or releases, exactly once.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Message",
            fields=[
                (
                    "id",
                    fields.CharField(
                        primary_key=True, default=new_id, unique=True, db_index=True, max_length=32
                    ),
                ),
                (
                    "session",
                    fields.ForeignKeyField(
                        "models.ChatSession",
                        source_field="session_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="messages",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "role",
                    fields.CharEnumField(
                        description="USER: user\nASSISTANT: assistant\nSYSTEM: system",
                        enum_type=Role,
                        max_length=16,
                    ),
                ),
                (
                    "content",
                    fields.JSONField(
                        default=list,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("visible", fields.BooleanField(default=True)),
                ("prompt_tokens", fields.IntField(default=0)),
                ("completion_tokens", fields.IntField(default=0)),
                ("task_id", fields.CharField(null=True, max_length=32)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={"table": "messages", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="RedeemCode",
            fields=[
                (
                    "code",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64),
                ),
                ("credits", fields.BigIntField()),
                ("max_uses", fields.IntField(default=1)),
                ("uses", fields.IntField(default=0)),
                ("expires_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "created_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="created_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="codes_created",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={"table": "redeem_codes", "app": "models", "pk_attr": "code"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="CodeRedemption",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "code",
                    fields.ForeignKeyField(
                        "models.RedeemCode",
                        source_field="code_id",
                        db_constraint=True,
                        to_field="code",
                        related_name="redemptions",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="redemptions",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "code_redemptions",
                "app": "models",
                "unique_together": (("code", "user"),),
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="RefreshToken",
            fields=[
                (
                    "id",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="refresh_tokens",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("token_hash", fields.CharField(unique=True, max_length=64)),
                (
                    "kind",
                    fields.CharEnumField(
                        default=LoginKind.PASSWORD,
                        description="PASSWORD: password\nWECHAT: wechat",
                        enum_type=LoginKind,
                        max_length=16,
                    ),
                ),
                ("expires_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("revoked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "refresh_tokens",
                "app": "models",
                "pk_attr": "id",
                "table_description": "One refresh token, revoked when rotated or logged out.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Task",
            fields=[
                (
                    "id",
                    fields.CharField(
                        primary_key=True, default=new_id, unique=True, db_index=True, max_length=32
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="tasks",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "session",
                    fields.ForeignKeyField(
                        "models.ChatSession",
                        source_field="session_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="tasks",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("model", fields.CharField(max_length=128)),
                (
                    "state",
                    fields.CharEnumField(
                        default=TaskState.QUEUED,
                        description="QUEUED: queued\nRUNNING: running\nSUCCEEDED: succeeded\nFAILED: failed\nCANCELLED: cancelled",
                        enum_type=TaskState,
                        max_length=16,
                    ),
                ),
                (
                    "request",
                    fields.JSONField(
                        default=dict,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("reservation_id", fields.CharField(null=True, max_length=32)),
                ("user_message_id", fields.CharField(null=True, max_length=32)),
                ("message_id", fields.CharField(null=True, max_length=32)),
                ("prompt_tokens", fields.IntField(default=0)),
                ("completion_tokens", fields.IntField(default=0)),
                ("cost", fields.BigIntField(default=0)),
                ("error_code", fields.CharField(null=True, max_length=64)),
                ("error_message", fields.TextField(null=True, unique=False)),
                ("attempts", fields.IntField(default=0)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("started_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "finished_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={"table": "tasks", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Upload",
            fields=[
                (
                    "id",
                    fields.CharField(
                        primary_key=True, default=new_id, unique=True, db_index=True, max_length=32
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="uploads",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("content_type", fields.CharField(max_length=128)),
                ("size", fields.BigIntField()),
                ("path", fields.CharField(max_length=512)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "uploads",
                "app": "models",
                "pk_attr": "id",
                "table_description": "An uploaded file owned by a user (chat images for now).",
            },
            bases=["Model"],
        ),
    ]
